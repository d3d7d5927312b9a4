"""fewshot_fid: few-shot conditional generation by rejection sampling the latent prior (D2C protocol, Diff-AE Table 3).

For each target attribute c and labelling regime (PROTOCOL "Few-shot conditional generation"):
  binary  a classifier on 50 positives + 50 negatives;
  pu      100 positives + 10,000 unlabeled images treated as negatives, the positives
          oversampled (repeated) to the unlabeled count so the classes balance.
The classifier is a logistic regression on the standardised code (encode(): Diff-AE's
z_sem, the DMZ-style model's hard bits; mean/std of the labelled pool). Codes are drawn
from the model's own latent prior (latent DDIM; Bernoulli bits), a code is rejected when
p(c|z) < 0.5 and otherwise accepted with probability p(c|z); accepted codes are decoded
with x_T ~ N(0, I). The Frechet distance between the accepted images and all real images
of class c (in the pool) is the score; each regime is repeated `repeats` times with new
labelled sets and reported as mean, with a t-interval over the repeats as its CI (the
paper reports mean +- std, kept in the record). Two references sit beside it, per attribute:
  naive          all real pool images vs the class-c images;
  unconditional  n_samples samples of the same prior WITHOUT rejection (same T, T_latent,
                 x_T ~ N(0, I); ctx.samples, so shared with sample_fid at the same n, T and
                 seed) vs the class-c images, at the same n as the conditional score.
The rejection step is doing its job only where the conditional distance is below the
unconditional one; the naive baseline alone cannot tell, since it uses real images.

Pure cores: `labelled_set` (which pool rows are labelled how) and `rejection_sample`
(arrays in, accepted codes out), both tested on synthetic inputs with known answers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
from scipy import stats as sps
from sklearn.linear_model import LogisticRegression

from diffae_bench.errors import DataError
from diffae_bench.metrics.frechet import FeatureNetConfig, extract, feature_spaces, features_distance, features_distance_ci
from diffae_bench.harness.task import Metric, Task, TaskResult

from .sample_fid import FD_METRICS


@dataclass(frozen=True)
class FewShotConfig:
    attributes: tuple[str, ...] = ()  # target binary attributes; () = the data set's first two
    modes: tuple[Literal["binary", "pu"], ...] = ("binary", "pu")  # labelling regimes (D2C)
    n_binary: int = 50  # binary regime: positives, and as many negatives
    n_pu_positive: int = 100  # PU regime: labelled positives
    n_pu_unlabeled: int = 10_000  # PU regime: unlabeled images treated as negatives
    n_pool: int = 10_000  # first n training images: labelled sets are drawn from them, and they are the real reference
    n_samples: int = 200  # accepted samples per repeat (paper: 5,000; CPU default)
    repeats: int = 3  # labelled sets per regime (paper: 3)
    T: int = 20  # DDIM steps decoding accepted codes (paper: 100; CPU default)
    T_latent: int = 50  # DDIM steps of the latent sampler (Diff-AE's latent DDIM)
    max_draws: int = 1_000_000  # codes drawn before giving up on reaching n_samples
    inception: bool = True  # FID as well, where the InceptionV3 weights exist
    feature_net: FeatureNetConfig = field(default_factory=FeatureNetConfig)  # the fd_cnn network


# -- pure cores ---------------------------------------------------------------------------
def labelled_set(positive: np.ndarray, mode: str, cfg: FewShotConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pool row indices and 0/1 labels of one labelled training set for the latent classifier.

    binary: n_binary rows with positive=True labelled 1, n_binary with positive=False labelled 0.
    pu: n_pu_positive positives labelled 1, repeated to the number of unlabeled rows; n_pu_unlabeled
    rows drawn from the whole pool (positives included, as unlabeled data would be) labelled 0.
    """
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    if mode == "binary":
        k = cfg.n_binary
        if len(pos) < k or len(neg) < k:
            raise DataError(f"binary few-shot needs {k} positives and {k} negatives, the pool has {len(pos)} and {len(neg)}")
        p, n = rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)
        return np.r_[p, n], np.r_[np.ones(k), np.zeros(k)].astype(np.int64)
    if mode == "pu":
        if len(pos) < cfg.n_pu_positive:
            raise DataError(f"PU few-shot needs {cfg.n_pu_positive} positives, the pool has {len(pos)}")
        n_unl = min(cfg.n_pu_unlabeled, len(positive))
        p = rng.choice(pos, cfg.n_pu_positive, replace=False)
        u = rng.choice(len(positive), n_unl, replace=False)
        p_over = np.resize(p, max(n_unl, len(p)))  # oversample positives to balance the classes
        return np.r_[p_over, u], np.r_[np.ones(len(p_over)), np.zeros(n_unl)].astype(np.int64)
    raise ValueError(f"unknown few-shot mode {mode!r}: use binary or pu")


def rejection_sample(draw: Callable[[int], np.ndarray], prob: Callable[[np.ndarray], np.ndarray], n_accept: int,
                     rng: np.random.Generator, batch: int = 1024, max_draws: int = 1_000_000) -> tuple[np.ndarray, int]:
    """D2C rejection sampling: reject z with p(c|z) < 0.5, else accept with probability p(c|z).

    draw(m) gives m codes from the prior, prob(z) their p(c|z). Returns the
    first n_accept accepted codes (in draw order) and how many codes were drawn
    to get them (the acceptance rate is n_accept / drawn).
    """
    accepted, drawn, have = [], 0, 0
    while have < n_accept:
        if drawn >= max_draws:
            raise RuntimeError(f"rejection sampling accepted {have} of {drawn} codes, short of {n_accept}: "
                               "the class is (nearly) absent from the prior's samples")
        z = draw(batch)
        p = prob(z)
        kept = np.flatnonzero((p >= 0.5) & (rng.random(len(p)) < p))
        need = n_accept - have
        if len(kept) >= need:  # stop at the n_accept-th acceptance: later draws were not needed
            kept = kept[:need]
            drawn += int(kept[-1]) + 1
        else:
            drawn += len(z)
        accepted.append(z[kept])
        have += len(kept)
    return np.concatenate(accepted), drawn


def repeat_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over repeats (NaN-free only with >= 2 repeats)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    half = sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return (float(v.mean() - half), float(v.mean() + half))


# -- task -------------------------------------------------------------------------------
class FewShotFID(Task):
    name = "fewshot_fid"
    # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size.
    # 3: the unconditional-samples control (method=unconditional) beside the naive baseline (issue 21).
    version = 3
    Config = FewShotConfig
    needs_attributes = True
    min_images = 2  # the pool is also the real reference: a covariance needs two images

    @classmethod
    def min_images_for(cls, cfg: FewShotConfig) -> int:
        """The labelled sets must fit in the pool: 2 x n_binary (binary), n_pu_positive (PU), at least."""
        need = [cls.min_images] + ([2 * cfg.n_binary] if "binary" in cfg.modes else []) + (
            [cfg.n_pu_positive] if "pu" in cfg.modes else [])
        return max(need)
    description = "few-shot conditional generation (D2C binary / PU): Frechet distance to the target class (Table 3)"
    metrics = FD_METRICS + (
        Metric("acceptance_rate", higher_is_better=True,
               description="accepted / drawn codes of the rejection sampler (informational)"),
    )

    def run(self, ctx, cfg: FewShotConfig) -> TaskResult:
        res = TaskResult()
        model = ctx.model
        if not model.has_semantic_latent:
            res.notes.append(f"not applicable: the {model.kind} model has no semantic latent to condition by rejection")
            return res
        n_pool = ctx.n_images("train", cfg.n_pool, minimum=self.min_images)
        ds = ctx.dataset("train")
        targets = cfg.attributes or ds.binary_attributes[:2]
        missing = [a for a in targets if a not in ds.binary_attributes]
        if missing or not targets:
            raise DataError(f"fewshot_fid: {ctx.dataset_name} has no binary attribute(s) {missing or '(none)'}; "
                            f"choose from {', '.join(ds.binary_attributes)}")
        z_train = ctx.z("train", n_pool)
        z_pool = z_train.double().numpy()
        mu, sd = z_pool.mean(0), z_pool.std(0) + 1e-6  # standardise with the pool's statistics
        z_std = (z_pool - mu) / sd
        attrs = ctx.attributes("train", n_pool)
        spaces = feature_spaces(ctx, cfg.feature_net, res, cfg.inception)
        real = {s.metric: ctx.real_features(s, "train", n_pool) for s in spaces}
        # The control: the prior's samples without rejection, at the conditional score's n (FD's bias depends on n).
        uncond_images = ctx.samples(cfg.n_samples, cfg.T, cfg.T_latent)
        uncond = {s.metric: extract(s, uncond_images, ctx.batch_size) for s in spaces}
        detail = {}
        for attr in targets:
            positive = attrs[attr].to_numpy() == 1
            for s in spaces:
                # The naive baseline: the whole pool as "samples"; its CI resamples the pool's images.
                pool, target = real[s.metric], real[s.metric][positive]
                res.add(s.metric, features_distance(pool, target), features_distance_ci(pool, target, seed=ctx.seed),
                        n=int(positive.sum()), attr=attr, method="naive")
                # The control: unconditional samples vs class c; its CI resamples the samples (as sample_fid).
                fake = uncond[s.metric]
                res.add(s.metric, features_distance(fake, target), features_distance_ci(fake, target, seed=ctx.seed),
                        n=cfg.n_samples, attr=attr, method="unconditional")
            for mode in cfg.modes:
                fds, rates = {s.metric: [] for s in spaces}, []
                for r in range(cfg.repeats):
                    images, rate = self._one_repeat(ctx, cfg, z_std, mu, sd, positive, attr, mode, r)
                    rates.append(rate)
                    for s in spaces:
                        fds[s.metric].append(features_distance(extract(s, images, ctx.batch_size), real[s.metric][positive]))
                for metric, v in fds.items():
                    res.add(metric, float(np.mean(v)), repeat_interval(v), n=cfg.n_samples, attr=attr, method=mode)
                    detail[f"{metric}/{attr}/{mode}"] = {"per_repeat": v, "std": float(np.std(v, ddof=1)) if len(v) > 1 else None}
                res.add("acceptance_rate", float(np.mean(rates)), n=cfg.repeats, attr=attr, method=mode)
                detail[f"acceptance_rate/{attr}/{mode}"] = {"per_repeat": rates}
        res.extra["per_repeat"] = detail
        res.extra["departures"] = [f"{cfg.n_samples} accepted samples per repeat (paper: 5,000), T = {cfg.T} "
                                   f"(paper: 100), T_latent = {cfg.T_latent}; pool: first {n_pool} training images",
                                   "CI: Student-t interval of the mean over repeats (the paper reports mean +- std; "
                                   "std is in extra.per_repeat); naive and unconditional rows: bootstrap over images",
                                   "unconditional control (not in the paper): the prior's samples without rejection"]
        return res

    @staticmethod
    def _one_repeat(ctx, cfg, z_std, mu, sd, positive, attr, mode, r) -> tuple[torch.Tensor, float]:
        """One labelled set -> classifier -> rejection-sampled codes -> decoded images; and the acceptance rate."""
        seed = int(hashlib.sha256(f"{ctx.seed}/fewshot/{attr}/{mode}/{r}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        idx, y = labelled_set(positive, mode, cfg, rng)
        clf = LogisticRegression(max_iter=2000).fit(z_std[idx], y)
        gen = torch.Generator().manual_seed(seed)

        def draw(m):
            return ctx.sample_codes(m, cfg.T_latent, gen).double().numpy()

        z, drawn = rejection_sample(draw, lambda z: clf.predict_proba((z - mu) / sd)[:, 1], cfg.n_samples, rng,
                                    batch=max(256, 2 * cfg.n_samples), max_draws=cfg.max_draws)
        z = torch.from_numpy(z).float()
        x_T = ctx.noise(len(z), f"fewshot/{attr}/{mode}/{r}")
        images = ctx.decode(z, x_T, cfg.T, desc=f"decode {attr} {mode} #{r + 1}")
        return images, cfg.n_samples / drawn


TASK = FewShotFID  # what the task registry lists under this name
