"""reconstruction: how well (z_sem, x_T) reproduces an image (Diff-AE Tables 1-2).

For T in `T`, test images are encoded to z_sem, inverted to x_T with T
DDIM steps (the stochastic encoder) and decoded with T steps; the "random"
rows decode z_sem with x_T ~ N(0, I) instead (the "z_sem only" ablation,
Table 2a), which shows how much of the image z_sem alone carries. Models
without a semantic latent (DDIM) have only the inferred rows.

Conventions (PROTOCOL "Metrics, exactly"): images mapped to [0, 1]; SSIM with
an 11x11 Gaussian window, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, mean per image;
MSE the per-image mean over C, H, W; PSNR for data range 1; LPIPS (AlexNet) on
[-1, 1] where its weights exist. Each figure is the mean over images, with a
bootstrap CI over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffae_bench.metrics import image as M
from diffae_bench.metrics.stats import mean_ci
from diffae_bench.metrics.lpips_metric import lpips_scorer
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class ReconstructionConfig:
    n_images: int = 100  # test images (the paper: 30k CelebA-HQ; a CPU default, recorded as a departure)
    T: tuple[int, ...] = (10, 20, 50, 100)  # T for both inversion and decoding (paper Table 2)
    random_xT: bool = True  # also decode z_sem with x_T ~ N(0, I) (Table 2a, "z_sem only")
    split: str = "test"  # held-out images, never the training set
    lpips: bool = True  # compute LPIPS where the AlexNet weights exist
    grid_images: int = 8  # images shown in the reconstruction grid figure


def score_reconstruction(originals: torch.Tensor, recons: torch.Tensor, lpips_fn=None) -> dict[str, np.ndarray]:
    """Pure core: per-image ssim, mse, psnr (and lpips when lpips_fn is given) of images in [-1, 1]."""
    out = {"ssim": M.ssim(recons, originals).numpy(), "mse": M.mse(recons, originals).numpy(),
           "psnr": M.psnr(recons, originals).numpy()}
    if lpips_fn is not None:
        out["lpips"] = lpips_fn(recons, originals).numpy()
    return out


class Reconstruction(Task):
    name = "reconstruction"
    version = 2  # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size
    Config = ReconstructionConfig
    min_images = 2  # a bootstrap CI needs two images
    description = "SSIM / MSE / PSNR / LPIPS of inverted-and-decoded test images at T in {10,20,50,100} (Tables 1-2)"
    metrics = (
        Metric("ssim", higher_is_better=True, main=True, description="SSIM, 11x11 Gaussian window, [0, 1] images"),
        Metric("mse", higher_is_better=False, main=True, description="per-image MSE on [0, 1] images"),
        Metric("psnr", higher_is_better=True, description="per-image PSNR (dB), data range 1, averaged"),
        Metric("lpips", higher_is_better=False, main=True, description="LPIPS, AlexNet backbone, [-1, 1] inputs"),
    )

    def run(self, ctx, cfg: ReconstructionConfig) -> TaskResult:
        res = TaskResult()
        n = ctx.n_images(cfg.split, cfg.n_images, minimum=self.min_images)
        x = ctx.images(cfg.split, n)
        lpips_fn = lpips_scorer(ctx.device, res) if cfg.lpips else None
        sources = ["inferred"] + (["random"] if cfg.random_xT and ctx.model.has_semantic_latent else [])
        if cfg.random_xT and not ctx.model.has_semantic_latent:
            res.notes.append("no random-x_T rows: the model has no semantic latent, so decoding noise is not a reconstruction")
        per_image: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        for T in cfg.T:
            for src in sources:
                rec = ctx.reconstruction(cfg.split, n, T, src)
                scores = score_reconstruction(x, rec, lpips_fn)
                per_image[(T, src)] = scores
                for family, values in scores.items():
                    res.add(family, float(values.mean()), mean_ci(values, seed=ctx.seed), n=n, T=T, xT=src)
        res.extra["departures"] = [f"{n} test images of {ctx.dataset_name} (paper: 30k CelebA-HQ images)"]
        self._figures(ctx, cfg, x, sources, per_image, res)
        return res

    @staticmethod
    def _figures(ctx, cfg, x, sources, per_image, res: TaskResult) -> None:
        from diffae_bench.figures import save_image_rows, save_metric_plot

        path = ctx.figure_path("reconstructions.png")
        if path is None:
            return
        k = min(cfg.grid_images, len(x))
        rows, labels = [x[:k]], ["input"]
        for T in cfg.T:
            for src in sources:
                rows.append(ctx.reconstruction(cfg.split, len(x), T, src)[:k])
                labels.append(f"T={T} {src}")
        res.figures.append(save_image_rows(path, rows, labels).name)
        if len(cfg.T) > 1:
            for family in ("ssim", "mse"):
                series = {src: (list(cfg.T), [float(per_image[(T, src)][family].mean()) for T in cfg.T])
                          for src in sources}
                p = save_metric_plot(ctx.figure_path(f"{family}_vs_T.png"), series, "T (DDIM steps)", family,
                                     f"{family} vs T, x_T inferred / random")
                res.figures.append(p.name)


TASK = Reconstruction  # what the task registry lists under this name
