"""prior_fid: how much of the sample error is the latent prior's, under each prior the model offers.

PROTOCOL (DMZ-style variant): generation draws i.i.d. Bernoulli(0.5) bits; "the
empirical per-bit frequencies and re-used training codes are alternative priors".
Nothing in DMZ's objective (no KL or prior term) pulls the encoder's bits towards
fair, independent coins, so the better the encoder, the further its codes may be
from what Bernoulli(0.5) draws, and sample_fid's `z=prior` row mixes the decoder's
quality with that mismatch. This task separates them. For each sampling mode the
model's prior offers (models/priors.py: `modes`), n samples at each T are
compared with n real training images by the Frechet distance, exactly as
sample_fid's rows are (same n, the same training images, the same feature
networks, per-sample seeds), so its numbers compare with sample_fid's
`z=prior` and `z=autoencoding` rows at the same T. The data-derived priors read
encode() of the first 10,000 training images (the EvalContext passes them).

The codes' statistics say why the priors differ (pure core `code_statistics`):
  bit_balance     mean over bits of |p_j - 1/2|, p_j the frequency of 1 (0: fair coins)
  bit_dependence  mean over pairs of bits of |Pearson correlation| (0: independent; 1: copies)
  dead_bits       the fraction of bits that never change
computed on the same training codes, where the codes are binary, with bootstrap
CIs over images. bit_dependence is biased upward at finite n: independent fair
bits give about sqrt(2 / (pi n)) (0.008 at n = 10,000).

A model whose prior offers no choice (Diff-AE's latent DDIM, the DDIM baseline,
which has no latent) gets a note and no values: sample_fid already has its one row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffae_bench.harness.context import PRIOR_TRAIN_CODES
from diffae_bench.metrics.frechet import FeatureNetConfig, add_sample_distances, feature_spaces
from diffae_bench.metrics.stats import percentile_ci, resample_indices
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class PriorFIDConfig:
    n_samples: int = 500  # generated images per prior and T, and real training images (sample_fid's n: rows compare)
    T: tuple[int, ...] = (20,)  # DDIM steps of the image decoder (sample_fid's main column, Table 4's T = 20)
    T_latent: int = 50  # DDIM steps of a latent sampler, where a prior has one (sample_fid's)
    inception: bool = True  # FID as well, where the InceptionV3 weights exist
    feature_net: FeatureNetConfig = field(default_factory=FeatureNetConfig)  # the fd_cnn network (sample_fid's)
    n_boot: int = 200  # bootstrap resamples for each CI (a distance's resample refits the feature statistics)
    grid_images: int = 8  # samples per prior in the figure


METRICS = (
    Metric("fd_cnn", higher_is_better=False, main=True,
           description="Frechet distance of samples under each prior (keyed prior=...) in the data set's CNN features"),
    Metric("fid", higher_is_better=False, main=True,
           description="FID of samples under each prior: InceptionV3 pool features (only where its weights exist)"),
    Metric("bit_balance", higher_is_better=False, ideal=0.0,
           description="mean |frequency of 1 - 1/2| of the training codes' bits (0 = fair coins)"),
    Metric("bit_dependence", higher_is_better=False, ideal=0.0,
           description="mean |correlation| between pairs of the training codes' bits (0 = independent)"),
    Metric("dead_bits", higher_is_better=False, ideal=0.0,
           description="fraction of the training codes' bits that never change"),
)


def code_statistics(codes: np.ndarray) -> dict[str, float]:
    """Balance, pairwise dependence and dead bits of binary codes (n, d): how far they are from fair coins.

    Pairs with a constant bit have no correlation; they are left out of bit_dependence (nan if none is left),
    and counted by dead_bits instead.
    """
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or len(c) < 2:
        raise ValueError(f"code_statistics needs (n >= 2, d) codes, got shape {c.shape}")
    p = c.mean(0)
    live = c.std(0) > 0
    out = {"bit_balance": float(np.abs(p - 0.5).mean()), "dead_bits": float(1 - live.mean())}
    if live.sum() >= 2:
        corr = np.corrcoef(c[:, live], rowvar=False)
        out["bit_dependence"] = float(np.abs(corr[np.triu_indices_from(corr, k=1)]).mean())
    else:
        out["bit_dependence"] = float("nan")
    return out


def code_statistics_ci(codes: np.ndarray, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of code_statistics, images resampled (one resample shared by the three)."""
    c = np.asarray(codes, dtype=np.float64)
    boot = [code_statistics(c[idx]) for idx in resample_indices(len(c), n_boot=n_boot, seed=seed)]
    return {k: percentile_ci(np.array([b[k] for b in boot])) for k in boot[0]}


class PriorFID(Task):
    name = "prior_fid"
    version = 1
    Config = PriorFIDConfig
    min_images = 2  # a covariance needs two feature vectors
    description = "Frechet distance of samples under each latent prior the model offers (DMZ: PROTOCOL's three), + bit statistics"
    metrics = METRICS

    def run(self, ctx, cfg: PriorFIDConfig) -> TaskResult:
        res = TaskResult()
        modes = ctx.prior_modes
        if not modes:
            res.notes.append("the model's prior offers no choice of sampling mode: sample_fid has its one row")
            return res
        n_codes = ctx.n_images("train", PRIOR_TRAIN_CODES, minimum=self.min_images)
        codes = ctx.z("train", n_codes).float().numpy()
        if np.isin(codes, (0.0, 1.0)).all():
            stats, cis = code_statistics(codes), code_statistics_ci(codes, cfg.n_boot, ctx.seed)
            for key, value in stats.items():
                res.add(key, value, cis[key], n=n_codes)
        else:
            res.notes.append("no bit statistics: the codes the prior reads are not binary")
        n = ctx.n_images("train", cfg.n_samples, minimum=self.min_images)
        spaces = feature_spaces(ctx, cfg.feature_net, res, cfg.inception)
        real = {space.metric: ctx.real_features(space, "train", n) for space in spaces}
        grid = {}
        for T in cfg.T:
            for mode in modes:
                with ctx.sampling_with(mode):  # the mode is in the samples' cache key (model.describe)
                    images = ctx.samples(n, T, cfg.T_latent)
                grid.setdefault(mode, images[:cfg.grid_images])
                add_sample_distances(res, spaces, images, real, batch_size=ctx.batch_size, n_boot=cfg.n_boot,
                                     seed=ctx.seed, n=n, T=T, prior=mode)
        res.extra["prior_modes"] = list(modes)
        res.extra["departures"] = [f"{n} samples vs {n} training images (paper: 50k)",
                                   f"data-derived priors read encode() of the first {n_codes} training images"]
        path = ctx.figure_path("samples_by_prior.png")
        if path is not None:
            from diffae_bench.figures import save_image_rows
            res.figures.append(save_image_rows(path, list(grid.values()),
                                               [f"{m} T={cfg.T[0]}" for m in grid]).name)
        return res


TASK = PriorFID  # what the task registry lists under this name
