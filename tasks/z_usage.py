"""z_usage: does the decoder use its latent, and at which noise levels?

For held-out images x0 with codes z = encode(x0), the denoising loss of
L_simple (PROTOCOL: eps prediction, MSE) is measured twice at each t of a grid:
with the image's own code and with another image's code (a fixed derangement
of the test images, so no image keeps its own). Both arms share x0, t and the
noise eps (paired), so the difference is the code alone. The figure is the
relative gap

    gap(t) = (mean_i L(x0_i, z_pi(i), t) - mean_i L(x0_i, z_i, t)) / mean_i L(x0_i, z_i, t)

(a ratio of means over images, not a mean of per-image ratios, which small
per-image losses at low t make unstable), with a percentile bootstrap CI over
images (pairs resampled together, one resample for every t), and its mean over
t as the main score. A decoder that ignores z has gap 0 at every t; PROTOCOL's
guarded failure ("users of the reference code report models that ignore z")
shows here without any sampling. Where two images share a code (a collapsed
binary code), swapping them changes nothing: the record's extra says how often
the shuffled code equals the own one.

The noise is drawn per image from its own stream (seed, "z_usage", split,
image index; diffae_bench.rng), so image i's noise does not depend on the batch
size, on n or on the device. The decoder is the model's denoise, in float32
whatever the decode path's numeric mode (the bf16 default on CUDA was
accuracy-checked for sampling, not for loss gaps). Models without a semantic
code get a note and no values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffae_bench import diffusion as D
from diffae_bench import rng
from diffae_bench.errors import BenchError
from diffae_bench.metrics.stats import percentile_ci, resample_indices
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class ZUsageConfig:
    n_images: int = 256  # held-out images scored (each at every t, with both codes)
    t_values: tuple[int, ...] = (50, 100, 300, 500, 700, 900)  # diffusion steps t of the 1000 training steps
    split: str = "test"  # held-out images, never the training set


def fixed_derangement(n: int, seed: int) -> np.ndarray:
    """A random cyclic permutation of range(n) (Sattolo's algorithm): perm[i] != i for every i, n >= 2."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    perm = np.arange(n)
    gen = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(gen.integers(0, i))  # j < i (Sattolo; j <= i would be Fisher-Yates)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def score_z_usage(own: np.ndarray, shuffled: np.ndarray, seed: int = 0) -> dict:
    """Pure core: relative loss gaps from per-image losses, with bootstrap CIs over images.

    own, shuffled: (n_images, n_t) denoising losses of the same images, noise
    and t, conditioned on the own and on the shuffled code. Returns
      {"gap": [(value, (lo, hi)) per t], "mean_gap": (value, (lo, hi)),
       "loss_own": [...], "loss_shuffled": [...]}
    where gap is (mean shuffled - mean own) / mean own per t, and mean_gap its
    mean over t; one matrix of resampled image indices serves every statistic,
    so the per-t CIs and the mean's CI come from the same resamples.
    """
    own, shuffled = np.asarray(own, np.float64), np.asarray(shuffled, np.float64)
    if own.ndim != 2 or own.shape != shuffled.shape or len(own) < 2:
        raise ValueError(f"own and shuffled losses must be equal (n_images >= 2, n_t) arrays, "
                         f"got {own.shape} and {shuffled.shape}")
    idx = resample_indices(len(own), seed=seed)  # (n_boot, n)

    def gaps(o_mean, s_mean):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (s_mean - o_mean) / o_mean

    gap, gap_boot = gaps(own.mean(0), shuffled.mean(0)), gaps(own[idx].mean(1), shuffled[idx].mean(1))  # (n_t,), (n_boot, n_t)
    return {
        "gap": [(float(g), percentile_ci(gap_boot[:, j])) for j, g in enumerate(gap)],
        "mean_gap": (float(gap.mean()), percentile_ci(gap_boot.mean(1))),
        "loss_own": [(float(v), percentile_ci(own[idx, j].mean(1))) for j, v in enumerate(own.mean(0))],
        "loss_shuffled": [(float(v), percentile_ci(shuffled[idx, j].mean(1))) for j, v in enumerate(shuffled.mean(0))],
    }


class ZUsage(Task):
    name = "z_usage"
    version = 1
    Config = ZUsageConfig
    description = "denoising loss with the own vs a shuffled code per t: relative gap (does the decoder use z?)"
    metrics = (
        Metric("mean_gap", higher_is_better=True, main=True,
               description="relative loss gap (shuffled code - own code) / own code, mean over t"),
        Metric("gap", higher_is_better=True, description="relative loss gap at one t"),
        Metric("loss_own", higher_is_better=False, description="denoising MSE on eps with the image's own code"),
        Metric("loss_shuffled", higher_is_better=False, description="denoising MSE on eps with another image's code"),
    )

    def run(self, ctx, cfg: ZUsageConfig) -> TaskResult:
        res = TaskResult()
        model = ctx.model
        if not model.has_semantic_latent:
            res.notes.append(f"no z_usage for the {model.kind} model: it has no semantic code to keep or swap, "
                             "so the decoder's use of a code is not defined (not zero)")
            return res
        bad = [t for t in cfg.t_values if not 0 <= t < D.T_TRAIN]
        if bad or not cfg.t_values:
            raise BenchError(f"z_usage t_values must be non-empty integers in [0, {D.T_TRAIN}), got {cfg.t_values}")
        n = ctx.n_images(cfg.split, cfg.n_images, minimum=2)
        x0, z = ctx.images(cfg.split, n), ctx.z(cfg.split, n)
        perm = torch.from_numpy(fixed_derangement(n, ctx.seed))
        eps = rng.StackedGenerator.for_items(0, n, ctx.seed, "z_usage", cfg.split).randn(
            (n, len(cfg.t_values), *model.image_shape))
        alpha_bar = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))
        own, shuffled = np.zeros((n, len(cfg.t_values))), np.zeros((n, len(cfg.t_values)))

        @torch.no_grad()
        def loss(x_t, t, code, noise):  # per-image L_simple: mean over C, H, W of the squared eps error
            return (model.denoise(x_t, t, code).float() - noise.float()).pow(2).flatten(1).mean(1)

        for j, t_value in enumerate(cfg.t_values):
            t = torch.full((n,), t_value, dtype=torch.long)
            x_t = D.q_sample(x0, t, eps[:, j], alpha_bar)
            own[:, j] = ctx.batched(f"own z t={t_value}", n, loss, x_t, t, z, eps[:, j]).numpy()
            shuffled[:, j] = ctx.batched(f"shuffled z t={t_value}", n, loss, x_t, t, z[perm], eps[:, j]).numpy()
        scores = score_z_usage(own, shuffled, seed=ctx.seed)
        for j, t_value in enumerate(cfg.t_values):
            for family in ("gap", "loss_own", "loss_shuffled"):
                value, ci = scores[family][j]
                res.add(family, value, ci, n=n, t=t_value)
        value, ci = scores["mean_gap"]
        res.add("mean_gap", value, ci, n=n)
        same = (z == z[perm]).all(1)
        res.extra["shuffled_code_equal_fraction"] = float(same.float().mean())
        res.extra["distinct_codes"] = int(len(torch.unique(z, dim=0)))
        res.extra["departures"] = [f"{n} {cfg.split} images of {ctx.dataset_name}"]
        return res


TASK = ZUsage  # what the task registry lists under this name
