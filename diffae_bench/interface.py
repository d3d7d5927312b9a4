"""The one small interface every model offers and every task uses.

Tasks never import model classes: they receive an object with these methods.
A new variant plugs in by subclassing `DiffusionAutoencoder` (or by wrapping a
foreign model in a small adapter that does), and registering a factory.

All image tensors are float in [-1, 1], shape (B, C, H, W). Methods take and
return batches on the model's device; callers stream data in batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from . import rng
from .errors import BenchError


class NoSemanticLatent(BenchError):
    """Asked for z_sem from a model that has none (e.g. the DDIM baseline)."""


class DiffusionAutoencoder(nn.Module, ABC):
    """What a task may ask of a model.

    Subclasses set `kind` (registry name), `latent_type` ("continuous",
    "binary", or None for a model without a semantic latent) and `z_dim`.
    """

    kind: str = "abstract"
    latent_type: str | None = None  # "continuous" (Diff-AE), "binary" (DMZ), None (DDIM)
    z_dim: int = 0  # width of the semantic code; 0 without one

    @property
    def has_semantic_latent(self) -> bool:
        return self.latent_type is not None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images the model takes and makes."""

    # -- semantic code -----------------------------------------------------
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """The deterministic semantic code z of clean images, (B, z_dim)."""
        raise NoSemanticLatent(f"the {self.kind} model has no semantic latent z_sem")

    def sample_latent(self, n: int, T_latent: int, generator: rng.Generator = None) -> torch.Tensor:
        """Draw n codes from the model's latent prior (latent DDIM, Bernoulli, ...).

        Draw through diffae_bench.rng (rng.randn(shape, generator), ...): with a
        StackedGenerator each code comes from its own item's stream, so codes do
        not depend on the batch they were drawn in.
        """
        raise NoSemanticLatent(f"the {self.kind} model has no semantic latent to sample")

    def representations(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named codes of clean images for probes, each (B, D); {} without a semantic latent.

        Diff-AE gives {"z_sem": ...}; the DMZ-style model its soft (probability)
        code and its hard bits. The inverted x_T, pixels and controls are added
        by the tasks themselves, for every model alike.
        """
        return {"z_sem": self.encode(x0)} if self.has_semantic_latent else {}

    def latent_paths(self, z_a: torch.Tensor, z_b: torch.Tensor, n_points: int) -> dict[str, torch.Tensor]:
        """Paths between codes z_a[i] and z_b[i]: name -> (n_points, B, z_dim), ends included.

        Continuous latents: linear interpolation (Diff-AE lerps z_sem, paper
        Sec. 5.1). Other latents override (the DMZ-style model adds a Hamming path).
        """
        w = torch.linspace(0, 1, n_points, device=z_a.device, dtype=z_a.dtype).view(-1, 1, 1)
        return {"lerp": (1 - w) * z_a + w * z_b}

    def prior_needs_train_codes(self) -> bool:
        """True when sample_latent needs fit_prior(train codes) first (data-derived priors)."""
        return False

    def fit_prior(self, train_codes: torch.Tensor) -> None:
        """Give the latent prior the training set's codes (encode() of the train split).

        A no-op for models whose prior is a trained network (Diff-AE's latent
        DDIM); models with data-derived priors (empirical bit frequencies,
        re-used codes) need it before sample_latent.
        """

    # -- stochastic part -----------------------------------------------------
    @abstractmethod
    def encode_stochastic(self, x0: torch.Tensor, T: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """x_T by DDIM inversion with T steps (conditioned on z where the model has one)."""

    @abstractmethod
    def decode(self, z: torch.Tensor | None, x_T: torch.Tensor, T: int) -> torch.Tensor:
        """Images from (z, x_T) by T-step DDIM; z is None for models without one."""

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """eps_theta(x_t, t[, z]): the denoiser that decode() and encode_stochastic() run.

        t: original timesteps (0..999), (B,) long; z: a code from encode() (None
        without a semantic latent), not necessarily the image's own (z_usage
        swaps codes between images). Optional: training diagnostics (the high-t
        x0 check, diffae_bench.x0_diagnostic) and the z_usage task use it, and
        skip models without it with a note.
        """
        raise NotImplementedError(f"the {self.kind} model does not expose its denoiser")

    # -- generation ------------------------------------------------------------
    def sample(self, n: int, T: int, T_latent: int = 100, generator: rng.Generator = None) -> torch.Tensor:
        """Unconditional samples: z from the latent prior, x_T ~ N(0, I), decode."""
        z = self.sample_latent(n, T_latent, generator) if self.has_semantic_latent else None
        return self.decode(z, self.noise(n, generator), T)

    def noise(self, n: int, generator: rng.Generator = None) -> torch.Tensor:
        """x_T ~ N(0, I), drawn on the CPU generator(s) for device-independent seeds."""
        return rng.randn((n, *self.image_shape), generator).to(self.device)

    # -- identity --------------------------------------------------------------
    def describe(self) -> dict:
        """What a result record says about the model (overridden to add config)."""
        return {"kind": self.kind, "latent_type": self.latent_type, "z_dim": self.z_dim}
