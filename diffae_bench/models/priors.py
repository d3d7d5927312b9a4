"""Latent priors: where a model's unconditional codes come from.

A prior is an nn.Module (its state travels in the model's checkpoint) with

  fit(codes)                   statistics from the training codes before training (e.g. standardisation)
  loss(codes, generator)       the stage-2 training loss; only priors with parameters have one
  sample(n, generator, ...)    n codes, drawn through diffae_bench.rng on the CPU generator(s)
  trainable                    True: `bench train --stage latent` fits it (generic trainer, train.py)
  uses_train_codes             True: sample() needs encode() of the training split (passed by the context)
  uses_T_latent                True (default): sample()'s draws depend on T_latent
  modes, sampling_with(mode)   the sampling choices a prior offers (() for one fixed prior), and a
                               block that samples with one of them (the prior_fid task compares them)

Diff-AE's prior is the latent DDIM below; the DMZ-style model's priors
(Bernoulli(0.5), empirical bit frequencies, re-used codes) live with it in
baselines/dmz.py; the DDIM baseline has none.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .. import diffusion as D
from .. import rng
from ..errors import BenchError
from ..nets import LatentMLP, LatentMLPConfig
from .loss import draw_device


class LatentPrior(nn.Module):
    trainable: bool = False  # has parameters that a second training stage fits with loss()
    uses_train_codes: bool = False  # sample() needs the training codes
    uses_T_latent: bool = True  # sample()'s draws depend on T_latent (a latent sampler's steps); False lets
    #                             the samples cache share them between tasks that ask for different T_latent
    modes: tuple[str, ...] = ()  # the sampling choices this prior offers; () = one fixed prior
    mode: str | None = None  # the choice sample() uses now; a prior with modes sets it (BitPrior: a checked property)

    @contextlib.contextmanager
    def sampling_with(self, mode: str):
        """Inside the block sample() uses `mode`; the prior's own mode is restored after, even on error.

        A mode is a sampling choice, not part of the trained model (PROTOCOL's alternative DMZ priors),
        and describe() reports it, so the samples cache and records see which one drew each sample.
        """
        if mode not in self.modes:
            offered = ", ".join(self.modes) or "none"
            raise BenchError(f"the {type(self).__name__} prior has no sampling mode {mode!r} (offers: {offered})")
        own = self.mode
        self.mode = mode
        try:
            yield self
        finally:
            self.mode = own

    def fit(self, codes: torch.Tensor) -> None:
        """Statistics of the training codes, set before training (default: nothing)."""

    def loss(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise BenchError(f"the {type(self).__name__} prior has nothing to train")

    def reset_parameters(self) -> None:
        """A fresh, seeded initialisation before stage 2 (default: nothing)."""

    def sample(self, n: int, generator: rng.Generator = None, *, T_latent: int = 100,
               train_codes: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


class LatentNotTrained(BenchError):
    pass


class LatentDDIMPrior(LatentPrior):
    """Diff-AE's latent DDIM (paper Sec. 3.2, Table 6).

    With the encoder frozen, a DDIM is fitted to z_sem standardised per
    dimension with the training set's mean/std: L1 loss on epsilon, constant
    beta = 0.008 over 1000 steps; samples are un-standardised afterwards.
    """

    trainable = True

    def __init__(self, cfg: LatentMLPConfig):
        super().__init__()
        self.net = LatentMLP(cfg)
        self.register_buffer("z_mean", torch.zeros(cfg.z_dim))  # standardisation of z_sem (fit)
        self.register_buffer("z_std", torch.ones(cfg.z_dim))
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))  # set when stage 2 has saved
        self._alpha_bar = torch.from_numpy(D.alphas_cumprod(D.constant_betas()))

    def fit(self, codes: torch.Tensor) -> None:
        self.z_mean.copy_(codes.mean(0))
        self.z_std.copy_(codes.std(0).clamp_min(1e-6))

    def reset_parameters(self) -> None:
        self.net.reset_parameters()

    def loss(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 on epsilon for standardised z, constant beta 0.008 (Table 6)."""
        zs = (codes - self.z_mean) / self.z_std
        b, where = zs.shape[0], draw_device(generator)
        t = torch.randint(0, D.T_TRAIN, (b,), generator=generator, device=where).to(codes.device)
        noise = torch.randn(zs.shape, generator=generator, device=where).to(codes.device)
        z_t = D.q_sample(zs, t, noise, self._alpha_bar)
        return F.l1_loss(self.net(z_t, t), noise)

    @torch.no_grad()
    def sample(self, n: int, generator: rng.Generator = None, *, T_latent: int = 100,
               train_codes: torch.Tensor | None = None) -> torch.Tensor:
        if not bool(self.trained):
            raise LatentNotTrained(
                "this Diff-AE has no trained latent DDIM; train one with: bench train --stage latent --out RUN_DIR")
        z_T = rng.randn((n, self.z_mean.shape[0]), generator).to(self.z_mean.device)
        # Standardised z is unbounded: no x0 clipping in latent space (reference code).
        zs = D.ddim_sample(self.net, z_T, D.respace(T_latent, D.constant_betas()), clip_x0=False)
        return zs * self.z_std + self.z_mean

    def describe(self) -> dict:
        return {"latent_trained": bool(self.trained)}
