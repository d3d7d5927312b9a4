"""sample_fid: unconditional sample quality against sampling steps (Diff-AE Table 4).

For each T in `T`, n samples (z from the model's latent prior, x_T ~ N(0, I),
T-step DDIM) are compared with n real training images by the Frechet distance
(PROTOCOL "Unconditional FID"). Models with a semantic latent also get the
"+autoencoding" reference row: z_sem encoded from n real test images, x_T ~ N(0, I),
decoded with T steps. It shows what the decoder can do when z is perfect, so the
gap to the sampled row is the latent prior's share of the error.

Feature spaces (diffae_bench.metrics.frechet): `fd_cnn`, the data set's own small
classifier, always; `fid` (InceptionV3) only where its weights exist. The two
are different metrics and are never mixed. Both are biased upward at small n,
so only numbers with the same n compare; n is in every value. The floor rows
(`fd_cnn_floor`) give what real test images score against the same training
images at that n, so "within 10x of the floor" (issue 21) reads off one record.
`corner_gap` is the background check: every real shapes and MNIST image is
black in its corners, and samples whose first DDIM steps got a wrong x0 keep a
grey or coloured background that FD ranks only loosely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffae_bench.metrics.frechet import (FeatureNetConfig, add_sample_distances, feature_spaces, features_distance,
                                  features_distance_ci)
from diffae_bench.metrics.image import abs_ci, corner_means
from diffae_bench.metrics.stats import mean_ci
from diffae_bench.harness.task import Metric, Task, TaskResult


@dataclass(frozen=True)
class SampleFIDConfig:
    n_samples: int = 500  # generated images per T, and real training images (paper: 50k; CPU default)
    T: tuple[int, ...] = (10, 20, 50, 100)  # DDIM steps of the image decoder (Table 4)
    T_latent: int = 50  # DDIM steps of the latent sampler (Diff-AE's latent DDIM)
    autoencoding: bool = True  # the "+autoencoding" row (z_sem of real test images), where the model has z
    inception: bool = True  # FID as well, where the InceptionV3 weights exist
    feature_net: FeatureNetConfig = field(default_factory=FeatureNetConfig)  # the fd_cnn network
    n_boot: int = 200  # bootstrap resamples of the generated images for each distance's CI (each one refits
    #   the feature statistics); corner_gap's CI, a plain mean's, keeps stats.N_BOOT (1,000): cheap, and part of v3


FD_METRICS = (
    Metric("fd_cnn", higher_is_better=False, main=True,
           description="Frechet distance in the penultimate features of the data set's own small CNN (not FID)"),
    Metric("fid", higher_is_better=False, main=True,
           description="FID: torch-fidelity InceptionV3 pool features (only where its weights exist)"),
)
FLOOR_METRICS = (
    Metric("fd_cnn_floor", higher_is_better=False,
           description="fd_cnn of n real test images vs the same n training images: what real images score at this n"),
    Metric("fid_floor", higher_is_better=False,
           description="FID of n real test images vs the same n training images (only where its weights exist)"),
)
CORNER_GAP = Metric(
    "corner_gap", higher_is_better=False,
    description="|mean background (four 4x4 corners, [0, 1]) of the images - that of the real training images|")


class SampleFID(Task):
    name = "sample_fid"
    version = 3  # 2: per-item seeds (diffae_bench.rng): noise and samples no longer depend on n or the batch size
    # 3: adds the real-vs-real floor and corner_gap (issue 21's background check); FD values as in v2
    Config = SampleFIDConfig
    min_images = 2  # a covariance needs two feature vectors
    description = "Frechet distance of unconditional samples vs real images at T in {10,20,50,100}, +autoencoding (Table 4)"
    metrics = FD_METRICS + FLOOR_METRICS + (CORNER_GAP,)

    def run(self, ctx, cfg: SampleFIDConfig) -> TaskResult:
        res = TaskResult()
        n = ctx.n_images("train", cfg.n_samples, minimum=self.min_images)
        rows = ["prior"]
        if cfg.autoencoding and ctx.model.has_semantic_latent:
            rows.append("autoencoding")
            n = min(n, ctx.n_images("test", cfg.n_samples, minimum=self.min_images))  # same n on both rows
        elif cfg.autoencoding:
            res.notes.append("no +autoencoding row: the model has no semantic latent")
        spaces = feature_spaces(ctx, cfg.feature_net, res, cfg.inception)
        real = {space.metric: ctx.real_features(space, "train", n) for space in spaces}
        # The floor: n real test images against the same n training images. FD is biased upward
        # at small n, so this is what a model whose samples were real images would get here.
        if ctx.n_images("test", n, minimum=self.min_images) == n:
            for space in spaces:
                floor = ctx.real_features(space, "test", n)
                res.add(f"{space.metric}_floor", features_distance(floor, real[space.metric]),
                        features_distance_ci(floor, real[space.metric], n_boot=cfg.n_boot, seed=ctx.seed), n=n)
        else:
            res.notes.append(f"no floor row: the test split has fewer than {n} images")
        real_corner = corner_means(ctx.images("train", n)).mean().item()
        for T in cfg.T:
            for row in rows:
                images = (ctx.samples(n, T, cfg.T_latent) if row == "prior"
                          else ctx.reconstruction("test", n, T, "random"))
                gap = corner_means(images).numpy() - real_corner
                res.add("corner_gap", abs(float(gap.mean())), abs_ci(mean_ci(gap, seed=ctx.seed)), n=n, T=T, z=row)
                add_sample_distances(res, spaces, images, real, batch_size=ctx.batch_size, n_boot=cfg.n_boot,
                                     seed=ctx.seed, n=n, T=T, z=row)
        res.extra["departures"] = [f"{n} samples vs {n} training images (paper: 50k)",
                                   f"latent DDIM with T_latent = {cfg.T_latent}"]
        return res


TASK = SampleFID  # what the task registry lists under this name
