"""memorization: do generated samples copy training images?

PROTOCOL ("Metrics, exactly", Memorization): for each generated sample, the
nearest training image by pixel MSE, by MSE in z_sem space and by LPIPS; "a
statistic is better than a picture". The statistic follows the idea of the
data-copying test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020): a model that
generalises puts its samples no closer to the training set than fresh images
from the same distribution are, so we compare
  d_gen      nearest-training-image distance of each generated sample, with
  d_heldout  the same for as many held-out (test) images,
by a one-sided Mann-Whitney U test (H1: d_gen tends to be smaller). Reported:
  copy_auc     P(d_gen < d_heldout) (ties count one half): 0.5 = no sign of
               copying, near 1 = samples sit on training images; below 0.5 the
               samples are farther from the training set than real images
               (under-fitting, not copying). Main score, lower is better.
  copy_pvalue  the test's p-value (small = copying detected; higher is better)
  nn_median    median NN distance of the generated and of the held-out images
Departure from Meehan et al.: one global test, not their per-cell Z_U
statistic over a k-means partition of the training set (recorded in notes).

Distances: pixel MSE on [0, 1] images; z: MSE of encode() codes (samples are
encoded with the model's encoder; same ranking as L2); LPIPS where its weights
exist, searched among the `lpips_candidates` pixel-nearest training images.
The search covers the whole training split by default (60,000 MNIST images): a
copy of an image outside a subset would go unseen. It runs in blocks of the
training set, so memory stays bounded whatever the split's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import mannwhitneyu

from diffae_bench.metrics.image import to_unit
from diffae_bench.metrics.stats import auroc_rows, percentile_ci, resample_indices
from diffae_bench.metrics.lpips_metric import lpips_scorer
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class MemorizationConfig:
    n_samples: int = 200  # generated samples; as many held-out test images are the reference group
    n_train: int | None = None  # training images searched for nearest neighbours; None: the whole training split (an int: its first n)
    T: int = 20  # DDIM steps of the image sampler
    T_latent: int = 20  # DDIM steps of the latent sampler (Diff-AE's latent DDIM)
    lpips: bool = True  # LPIPS nearest neighbours where the AlexNet weights exist
    lpips_candidates: int = 32  # LPIPS is computed against this many pixel-nearest training images
    grid_images: int = 8  # samples (the closest to the training set) shown beside their nearest training image


# -- pure cores -----------------------------------------------------------------------
REFERENCE_BLOCK = 2**24  # float64 entries of one block of reference rows (128 MB) converted at a time


def _blocks(reference: torch.Tensor, budget: int = REFERENCE_BLOCK):
    """(start, rows) blocks of the flattened reference with at most `budget` entries each (at least one row)."""
    R = reference.flatten(1)
    step = max(1, budget // max(1, R.shape[1]))
    for s in range(0, len(R), step):
        yield s, R[s:s + step]


def nearest_k(queries: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 256, prepare=None,
              budget: int = REFERENCE_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query row, the MSE (mean over features) to its k nearest reference rows and their indices,
    (n_queries, k) each, nearest first; ties keep the lower index, as a stable sort over all rows would.

    Rows are flattened; ||q||^2 + ||r||^2 - 2 q.r in float64, clamped at 0.
    The reference (the whole training split: 60,000 MNIST images) is taken in
    blocks of `budget` entries, each converted by `prepare` (default: to
    float64) only while used, the queries in chunks of `chunk` rows, and the
    running k best merged with each block's, so memory stays one block plus a
    (n_queries x block rows) matrix.
    """
    prepare = prepare or (lambda x: x.double())
    Q = prepare(queries.flatten(1))
    q2 = (Q * Q).sum(1, keepdim=True)
    best = torch.empty((len(Q), 0), dtype=torch.float64)
    arg = torch.empty((len(Q), 0), dtype=torch.long)
    for r0, block in _blocks(reference, budget):
        R = prepare(block)
        r2 = (R * R).sum(1)
        d = torch.cat([q2[s:s + chunk] + r2 - 2 * Q[s:s + chunk] @ R.T for s in range(0, len(Q), chunk)])
        d_all = torch.cat([best, d.clamp_min(0) / Q.shape[1]], 1)
        i_all = torch.cat([arg, torch.arange(r0, r0 + len(R)).expand(len(Q), -1)], 1)
        order = d_all.sort(dim=1, stable=True)  # earlier rows sit first, so they win ties
        best, arg = order.values[:, :k], i_all.gather(1, order.indices[:, :k])
    return best, arg


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 256, prepare=None,
                       budget: int = REFERENCE_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, the MSE to its nearest reference row and that row's index (nearest_k with k = 1)."""
    d, i = nearest_k(queries, reference, 1, chunk, prepare, budget)
    return d[:, 0].numpy(), i[:, 0].numpy()


def pixel_nearest(images: torch.Tensor, train: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Nearest training image by pixel MSE on [0, 1] images (inputs in [-1, 1])."""
    return nearest_neighbours(images, train, prepare=to_unit)


def copying_test(d_gen: np.ndarray, d_heldout: np.ndarray, seed: int = 0) -> dict:
    """Pure core: are generated samples closer to the training set than held-out images are?

    One-sided Mann-Whitney U (alternative "less": d_gen stochastically
    smaller). copy_auc = P(d_gen < d_heldout) + 0.5 P(tie), the common-language
    effect size (AUROC of "-distance" separating generated from held-out);
    its CI resamples the two groups independently.
    """
    g, h = np.asarray(d_gen, np.float64), np.asarray(d_heldout, np.float64)
    if len(g) < 2 or len(h) < 2:
        raise ValueError(f"copying test needs >= 2 items per group, got {len(g)} and {len(h)}")
    u_gen, p = mannwhitneyu(g, h, alternative="less")  # U of d_gen: pairs with d_gen > d_heldout (+ ties / 2)
    auc = 1.0 - float(u_gen) / (len(g) * len(h))
    gi = resample_indices(len(g), seed=seed)
    hi = resample_indices(len(h), seed=seed + 1)
    scores = -np.concatenate([g[gi], h[hi]], axis=1)  # (n_boot, n_gen + n_heldout): closer = higher
    y = np.broadcast_to(np.r_[np.ones(len(g)), np.zeros(len(h))], scores.shape)
    boot = auroc_rows(y, scores)
    return {"copy_auc": auc, "copy_auc_ci": percentile_ci(boot), "copy_pvalue": float(p), "u_statistic": float(u_gen),
            "median_gen": float(np.median(g)), "median_heldout": float(np.median(h)), "n_gen": len(g),
            "n_heldout": len(h)}


# -- task ------------------------------------------------------------------------
class Memorization(Task):
    name = "memorization"
    # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size.
    # 3: the nearest neighbours are searched in the whole training split (was its first 2,000 images; issue 21).
    version = 3
    Config = MemorizationConfig
    min_images = 2  # of each group (samples / held-out, train) for the rank test
    description = "data-copying test: generated-to-train vs held-out-to-train NN distances (pixel, z, LPIPS)"
    metrics = (
        Metric("copy_auc", higher_is_better=False, main=True, ideal=0.5,
               description="P(d_gen < d_heldout) of NN-to-train distances (0.5 = no copying, 1 = copies)"),
        Metric("copy_pvalue", higher_is_better=True,
               description="one-sided Mann-Whitney U p-value (small = samples closer to train than held-out)"),
        Metric("nn_median", higher_is_better=True,
               description="median nearest-training-image distance (group=generated / heldout), informational"),
    )

    def run(self, ctx, cfg: MemorizationConfig) -> TaskResult:
        res = TaskResult()
        n = ctx.n_images("test", cfg.n_samples, minimum=self.min_images)  # held-out group; the samples match its size
        n_split = len(ctx.dataset("train"))
        # A copy of any training image must be found: by default the search covers the whole split.
        n_train = ctx.n_images("train", n_split if cfg.n_train is None else cfg.n_train, minimum=self.min_images)
        samples = ctx.samples(n, cfg.T, cfg.T_latent)
        heldout, train = ctx.images("test", n), ctx.images("train", n_train)
        nn: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # space -> (d_gen, d_heldout, nn index of gen)
        d_gen, i_gen = pixel_nearest(samples, train)
        nn["pixel_mse"] = (d_gen, pixel_nearest(heldout, train)[0], i_gen)
        if ctx.model.has_semantic_latent:
            with torch.no_grad():
                z_gen = ctx.batched("encode samples", len(samples), ctx.model.encode, samples)
            d_gen, i_gen = nearest_neighbours(z_gen, ctx.z("train", n_train))
            nn["z_mse"] = (d_gen, nearest_neighbours(ctx.z("test", n), ctx.z("train", n_train))[0], i_gen)
        else:
            res.notes.append(f"no z-space distances: the {ctx.model.kind} model has no semantic latent")
        lpips_fn = lpips_scorer(ctx.device, res) if cfg.lpips else None
        if lpips_fn is not None:
            d_gen, i_gen = self._lpips_nearest(lpips_fn, samples, train, cfg.lpips_candidates)
            nn["lpips"] = (d_gen, self._lpips_nearest(lpips_fn, heldout, train, cfg.lpips_candidates)[0], i_gen)
        for space, (dg, dh, _) in nn.items():
            t = copying_test(dg, dh, seed=ctx.seed)
            res.add("copy_auc", t["copy_auc"], t["copy_auc_ci"], n=n, space=space)
            res.add("copy_pvalue", t["copy_pvalue"], n=n, space=space)
            res.add("nn_median", t["median_gen"], n=n, space=space, group="generated")
            res.add("nn_median", t["median_heldout"], n=n, space=space, group="heldout")
            res.extra[space] = {k: v for k, v in t.items() if k != "copy_auc_ci"}
        res.notes.append("copying test: one global Mann-Whitney U over NN distances, not Meehan et al.'s "
                         "per-cell Z_U statistic")
        res.extra["n_train_searched"] = {"n": n_train, "of": n_split}
        res.extra["departures"] = [f"{n} samples and as many held-out images"] + (
            [f"{n_train} of the {n_split} training images searched (the first n of the split)"]
            if n_train < n_split else [])
        self._figure(ctx, cfg, samples, train, nn, res)
        return res

    @staticmethod
    def _lpips_nearest(lpips_fn, images: torch.Tensor, train: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """LPIPS nearest training image among each image's k pixel-nearest (all pairs would cost n x n_train)."""
        cand = nearest_k(images, train, k, prepare=to_unit)[1]  # (n, k), searched in blocks of the whole split
        dist = lpips_fn(images.repeat_interleave(cand.shape[1], 0), train[cand.flatten()]).view(cand.shape).numpy()
        best = dist.argmin(1)
        return dist[np.arange(len(dist)), best], cand.numpy()[np.arange(len(dist)), best]

    @staticmethod
    def _figure(ctx, cfg, samples, train, nn, res: TaskResult) -> None:
        from diffae_bench.figures import save_image_rows

        path = ctx.figure_path("nearest_train.png")
        if path is None:
            return
        d_pix, _, _ = nn["pixel_mse"]
        show = np.argsort(d_pix)[:cfg.grid_images]  # the samples closest to the training set: where copies would be
        rows, labels = [samples[show]], ["sample (closest first)"]
        for space, (_, _, idx) in nn.items():
            rows.append(train[idx[show]])
            labels.append(f"nearest train, {space}")
        res.figures.append(save_image_rows(path, rows, labels, label_width=150).name)


TASK = Memorization  # what the task registry lists under this name
