"""The model seam: a conditional denoiser, an optional semantic encoder, an optional latent prior.

k-diffusion's split: the samplers are plain functions (diffae_bench.diffusion)
and a model only says how to predict epsilon. This base class owns decode,
invert and sample through those functions, so a variant never re-implements
a sampler. A subclass provides

  image_shape               (C, H, W) of the images it takes and makes
  denoise(x_t, t, z)        eps_theta(x_t, t[, z]); z is None for a model without a semantic latent
                            (a network that outputs v hands its output through output_as_eps)
  loss(x0, generator)       its training loss (stage 1)

and, for a model with a semantic latent,

  encode(x0)                the code the decoder is conditioned on (Diff-AE's z_sem, DMZ's hard bits)
  codes                     the representations tasks may probe: Representation(name, dim, kind)
  representations(x0)       {name: (B, dim)} for those names (default: {"z_sem": encode(x0)})
  prior                     a LatentPrior (models/priors.py) that sample() draws codes from

Tasks never test a model's kind or a code's name: they ask for `codes`.
All image tensors are float in [-1, 1], shape (B, C, H, W), on the model's device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from .. import diffusion as D
from .. import rng
from ..errors import BenchError

REPRESENTATION_KINDS = ("continuous", "probability", "binary")


class NoSemanticLatent(BenchError):
    """Asked for a semantic code from a model that has none (e.g. the DDIM baseline)."""


@dataclass(frozen=True)
class Representation:
    """One code a model offers to probes, declared so tasks need not know the model."""

    name: str  # key in representations(): "z_sem", "soft", "hard"; a column suffix in tables
    dim: int  # width of the code
    kind: str = "continuous"  # continuous | probability (in [0, 1]) | binary (exact 0/1)
    interpolate: bool = False  # the code latent_paths() walks (one per model; default: the first)

    def __post_init__(self):
        if self.kind not in REPRESENTATION_KINDS:
            raise ValueError(f"representation kind must be one of {REPRESENTATION_KINDS}, got {self.kind!r}")


class DiffusionAutoencoder(nn.Module, ABC):
    """What a task may ask of a model (see the module doc)."""

    kind: str = "abstract"  # registry name, recorded with every result
    latent_type: str | None = None  # "continuous", "binary", or None without a semantic latent (recorded)
    z_dim: int = 0  # width of the code encode() returns; 0 without one

    def __init__(self, prediction: str = "eps"):
        super().__init__()
        # What the image network outputs (diffusion.PREDICTIONS): "eps", or "v" read as eps by output_as_eps.
        if prediction not in D.PREDICTIONS:
            raise ValueError(f"prediction must be one of {D.PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        # A LatentPrior (a submodule: its state is in the checkpoint), or None: no code sampler.
        # Set here, not as a class attribute, which would hide the registered submodule.
        self.prior = None

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

    # -- what a subclass implements --------------------------------------------------
    @abstractmethod
    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """eps_theta(x_t, t[, z]); t: ORIGINAL timesteps (0..999), (B,) long.

        z is any code of encode()'s shape (not necessarily the image's own:
        z_usage swaps codes between images), None without a semantic latent.
        """

    def output_as_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output as eps: itself for an eps network, diffusion.eps_from_v for a v one.

        Subclasses call it in denoise() and in the loss's denoiser, so training
        (L_simple on eps, unchanged) and every sampler and task see eps either way.
        """
        if self.prediction == "eps":
            return out
        return D.eps_from_v(x_t, out, D.image_alpha_bar(x_t.device)[t])

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """The deterministic semantic code of clean images, (B, z_dim)."""
        raise NoSemanticLatent(f"the {self.kind} model has no semantic latent")

    @property
    def codes(self) -> tuple[Representation, ...]:
        """The representations tasks may probe; () without a semantic latent."""
        return (Representation("z_sem", self.z_dim, "continuous", interpolate=True),) if self.has_semantic_latent else ()

    def representations(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """{name: (B, dim)} for every declared code (same order as `codes`)."""
        return {"z_sem": self.encode(x0)} if self.has_semantic_latent else {}

    def latent_paths(self, z_a: torch.Tensor, z_b: torch.Tensor, n_points: int) -> dict[str, torch.Tensor]:
        """Paths between codes z_a[i] and z_b[i] of the `interpolate` representation: name -> (n_points, B, dim).

        Continuous codes: linear interpolation (Diff-AE lerps z_sem, paper
        Sec. 5.1). Other latents add paths (the DMZ-style model a Hamming path).
        """
        self._need_latent("latent_paths")
        w = torch.linspace(0, 1, n_points, device=z_a.device, dtype=z_a.dtype).view(-1, 1, 1)
        return {"lerp": (1 - w) * z_a + w * z_b}

    # -- what the base class owns: the samplers of diffusion.py on denoise() -------------
    def _eps_fn(self, z: torch.Tensor | None) -> D.EpsFn:
        """The denoiser with its conditioning closed over, as the samplers take it."""
        if z is not None:
            self._need_latent("a code z")
            if z.ndim != 2 or z.shape[1] != self.z_dim:
                raise BenchError(f"the {self.kind} model takes codes of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        elif self.has_semantic_latent:
            raise BenchError(f"the {self.kind} model's decoder needs a code z (model.encode(x0))")
        return lambda x_t, t: self.denoise(x_t, t, z)

    @torch.no_grad()
    def decode(self, z: torch.Tensor | None, x_T: torch.Tensor, T: int) -> torch.Tensor:
        """Images from (z, x_T) by T-step DDIM (ddimT respacing, PROTOCOL); z None without a semantic latent."""
        z = None if z is None else z.to(x_T.dtype)
        return D.ddim_sample(self._eps_fn(z), x_T, D.respace(T))

    @torch.no_grad()
    def encode_stochastic(self, x0: torch.Tensor, T: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """x_T by T-step DDIM inversion (Diff-AE eq. 8), conditioned on z (default: encode(x0))."""
        if z is None and self.has_semantic_latent:
            z = self.encode(x0)
        return D.ddim_invert(self._eps_fn(z), x0, D.respace(T))

    @torch.no_grad()
    def sample_latent(self, n: int, T_latent: int, generator: rng.Generator = None,
                      train_codes: torch.Tensor | None = None) -> torch.Tensor:
        """n codes from the latent prior, on the model's device.

        train_codes: encode() of the training split, for priors derived from
        data (prior.uses_train_codes); the EvalContext passes them.
        """
        if self.prior is None:
            raise NoSemanticLatent(f"the {self.kind} model has no latent prior to sample codes from")
        return self.prior.sample(n, generator, T_latent=T_latent, train_codes=train_codes).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, T: int, T_latent: int = 100, generator: rng.Generator = None,
               train_codes: torch.Tensor | None = None) -> torch.Tensor:
        """Unconditional samples: z from the prior (where the model has a latent), x_T ~ N(0, I), decode.

        Draw through diffae_bench.rng: with a StackedGenerator each sample comes
        from its own item's stream, so samples do not depend on the batch.
        """
        z = self.sample_latent(n, T_latent, generator, train_codes) if self.has_semantic_latent else None
        return self.decode(z, self.noise(n, generator), T)

    def noise(self, n: int, generator: rng.Generator = None) -> torch.Tensor:
        """x_T ~ N(0, I), drawn on the CPU generator(s) for device-independent seeds."""
        return rng.randn((n, *self.image_shape), generator).to(self.device)

    # -- identity ------------------------------------------------------------------------
    def _need_latent(self, what: str) -> None:
        if not self.has_semantic_latent:
            raise NoSemanticLatent(f"the {self.kind} model has no semantic latent ({what})")

    def describe(self) -> dict:
        """What a result record says about the model (subclasses add their config)."""
        out = {"kind": self.kind, "latent_type": self.latent_type, "z_dim": self.z_dim}
        if self.prior is not None:
            out.update(self.prior.describe())
        return out

    # Checkpoints written before a rename of state-dict keys: {old prefix: new prefix}
    # (load_model applies it; e.g. Diff-AE's latent DDIM moved under `prior.`).
    LEGACY_STATE_KEYS: dict = {}

    @classmethod
    def upgrade_state(cls, state: dict) -> dict:
        """A state dict with legacy key names renamed to today's (LEGACY_STATE_KEYS)."""
        out = {}
        for k, v in state.items():
            for old, new in cls.LEGACY_STATE_KEYS.items():
                if k == old or (old.endswith(".") and k.startswith(old)):
                    k = new + k[len(old):]
                    break
            out[k] = v
        return out
