"""sample_fid: unconditional sample quality against sampling steps (Diff-AE Table 4).

For each T in `T`, n samples (z from the model's latent prior, x_T ~ N(0, I),
T-step DDIM) are compared with n real training images by the Frechet distance
(PROTOCOL "Unconditional FID"). Models with a semantic latent also get the
"+autoencoding" reference row: z_sem encoded from n real test images, x_T ~ N(0, I),
decoded with T steps. It shows what the decoder can do when z is perfect, so the
gap to the sampled row is the latent prior's share of the error.

Feature spaces (diffae_bench.frechet): `fd_cnn`, the data set's own small
classifier, always; `fid` (InceptionV3) only where its weights exist. The two
are different metrics and are never mixed. Both are biased upward at small n,
so only numbers with the same n compare; n is in every value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffae_bench.frechet import FeatureNetConfig, extract, feature_spaces, features_distance, features_distance_ci
from diffae_bench.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class SampleFIDConfig:
    n_samples: int = 500  # generated images per T, and real training images (paper: 50k; CPU default)
    T: tuple[int, ...] = (10, 20, 50, 100)  # DDIM steps of the image decoder (Table 4)
    T_latent: int = 50  # DDIM steps of the latent sampler (Diff-AE's latent DDIM)
    autoencoding: bool = True  # the "+autoencoding" row (z_sem of real test images), where the model has z
    inception: bool = True  # FID as well, where the InceptionV3 weights exist
    feature_net: FeatureNetConfig = field(default_factory=FeatureNetConfig)  # the fd_cnn network
    n_boot: int = 200  # bootstrap resamples of the generated images for each distance's CI


FD_METRICS = (
    Metric("fd_cnn", higher_is_better=False, main=True,
           description="Frechet distance in the penultimate features of the data set's own small CNN (not FID)"),
    Metric("fid", higher_is_better=False, main=True,
           description="FID: torch-fidelity InceptionV3 pool features (only where its weights exist)"),
)


class SampleFID(Task):
    name = "sample_fid"
    version = 2  # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size
    Config = SampleFIDConfig
    min_images = 2  # a covariance needs two feature vectors
    description = "Frechet distance of unconditional samples vs real images at T in {10,20,50,100}, +autoencoding (Table 4)"
    metrics = FD_METRICS

    def run(self, ctx, cfg: SampleFIDConfig) -> TaskResult:
        res = TaskResult()
        n = ctx.n_images("train", cfg.n_samples, minimum=self.min_images)
        rows = ["prior"]
        if cfg.autoencoding and ctx.model.has_semantic_latent:
            rows.append("autoencoding")
            n = min(n, ctx.n_images("test", cfg.n_samples, minimum=self.min_images))  # same n on both rows
        elif cfg.autoencoding:
            res.notes.append("no +autoencoding row: the model has no semantic latent")
        for space in feature_spaces(ctx, cfg.feature_net, res, cfg.inception):
            real = ctx.real_features(space, "train", n)
            for T in cfg.T:
                for row in rows:
                    images = (ctx.samples(n, T, cfg.T_latent) if row == "prior"
                              else ctx.reconstruction("test", n, T, "random"))
                    fake = extract(space, images, ctx.batch_size)
                    ci = features_distance_ci(fake, real, n_boot=cfg.n_boot, seed=ctx.seed)
                    res.add(space.metric, features_distance(fake, real), ci, n=n, T=T, z=row)
        res.extra["departures"] = [f"{n} samples vs {n} training images (paper: 50k)",
                                   f"latent DDIM with T_latent = {cfg.T_latent}"]
        return res


TASK = SampleFID  # what the task registry lists under this name
