"""The diffusion process as plain functions (k-diffusion style).

Everything here follows ../shared/PROTOCOL.md and the Diff-AE reference code
(guided-diffusion's respacing and DDIM):

- training: T_train = 1000 steps, linear betas 1e-4 .. 0.02, epsilon
  prediction with the plain MSE loss (Ho et al. 2020, L_simple); a network
  may instead output v (`PREDICTIONS`, a departure; models/base.py reads it
  as eps with `eps_from_v`, so the loss and every sampler still see eps);
- evaluation with T steps uses "ddimT" respacing: stride s is the smallest
  integer with len(range(0, 1000, s)) == T, kept steps {0, s, 2s, ...}, so
  sampling starts at t = 1000 - s (e.g. 900 for T = 10), not 999;
- DDIM (Song et al. 2021, eq. 12 with sigma = 0): predicted x0 clipped to
  [-1, 1] and epsilon re-derived from the clipped x0;
- the stochastic encoder of Diff-AE (paper eq. 8) is the same DDIM update run
  from t = 0 upwards; it is not exact (it uses eps(x_t) in place of the
  epsilon at the next step) and its error shrinks as T grows.

A denoiser is any callable `eps_fn(x_t, t) -> eps` where `t` is a long tensor
of ORIGINAL timesteps (0..999), one per batch element; models close over their
own conditioning (z_sem) before handing the callable to a sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from .errors import BenchError

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

T_TRAIN = 1000  # number of training diffusion steps (PROTOCOL)
# What an image network's output is read as: "eps" (Ho et al.; Diff-AE, the paper) or "v" (Salimans & Ho 2022)
PREDICTIONS = ("eps", "v")


# ---------------------------------------------------------------- schedules
def linear_betas(n: int = T_TRAIN, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al.'s linear schedule, float64 (the image diffusion)."""
    return np.linspace(beta_start, beta_end, n, dtype=np.float64)


def constant_betas(n: int = T_TRAIN, beta: float = 0.008) -> np.ndarray:
    """Constant beta = 0.008: the latent DDIM's schedule (Diff-AE Table 6)."""
    return np.full(n, beta, dtype=np.float64)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), float64."""
    return np.cumprod(1.0 - betas)


@lru_cache(maxsize=None)
def image_alpha_bar(device: torch.device) -> torch.Tensor:
    """The image diffusion's alpha_bar_t (linear betas), float64, made once per device.

    Read-only: the loss, v-reading and x0 diagnostic index it every step, and a
    per-step host-to-device copy would be a sync on a GPU (issue 21).
    """
    return torch.from_numpy(alphas_cumprod(linear_betas())).to(device)


# ---------------------------------------------------------------- respacing
def ddim_stride(T: int, T_train: int = T_TRAIN) -> int:
    """Smallest integer stride s with len(range(0, T_train, s)) == T ("ddimT")."""
    if not (isinstance(T, (int, np.integer)) and 1 <= T <= T_train):
        raise BenchError(f"cannot respace {T_train} training steps to T={T}: T must be an integer in 1..{T_train}")
    for s in range(1, T_train + 1):
        n = len(range(0, T_train, s))
        if n == T:
            return s
        if n < T:  # n only decreases with s: no stride gives exactly T
            break
    raise BenchError(
        f"no integer stride gives exactly T={T} steps out of {T_train} (ddimT respacing); "
        f"try a divisor of {T_train} such as 10, 20, 50 or 100"
    )


@dataclass(frozen=True)
class Respacing:
    """The kept timesteps of a T-step evaluation and their alpha_bar values."""

    steps: torch.Tensor  # (T,) long: original timesteps {0, s, 2s, ...}, ascending
    alpha_bar: torch.Tensor  # (T,) float64: alpha_bar at the kept steps

    @property
    def T(self) -> int:
        return len(self.steps)


def respace(T: int, betas: np.ndarray | None = None) -> Respacing:
    """ddimT respacing of a training schedule (linear betas by default).

    The network always sees the original t; only alpha_bar is sub-sampled, so
    the respaced chain is exactly guided-diffusion's SpacedDiffusion.
    """
    betas = linear_betas() if betas is None else betas
    s = ddim_stride(T, len(betas))
    kept = np.arange(0, len(betas), s)
    return Respacing(
        steps=torch.from_numpy(kept).long(),
        alpha_bar=torch.from_numpy(alphas_cumprod(betas)[kept]),
    )


# ---------------------------------------------------------------- training
def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4)."""
    a = _per_sample(alpha_bar.to(x0.device)[t], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """The eps a v-prediction means: eps = sqrt(1 - a) x_t + sqrt(a) v, with a = alpha_bar_t, (B,) float64.

    Salimans & Ho 2022 (Sec. 4, App. D) define v = sqrt(a) eps - sqrt(1 - a) x0;
    with x_t = sqrt(a) x0 + sqrt(1 - a) eps (eq. 4 above) the line solves for eps.
    Why it matters here (results/diagnostics/2026-11-28_background_eps_vs_v): at
    t = 999 the x0 a network implies is x0 = sqrt(a) x_t - sqrt(1 - a) v, so a
    v error reaches x0 about 1:1, where an eps error reaches it 157x enlarged
    (sqrt((1 - a) / a)); eps networks leave grey backgrounds on 3-channel shapes.
    """
    a = _per_sample(alpha_bar_t, x_t)
    return (1 - a).sqrt() * x_t + a.sqrt() * v.to(x_t.dtype)


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - a) eps) / sqrt(a): Ho et al. eq. 4 solved for x0 (a: alpha_bar_t, broadcastable, x_t's dtype)."""
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(a) x0) / sqrt(1 - a): eq. 4 solved for eps (a: alpha_bar_t, broadcastable, x_t's dtype)."""
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) float64 -> (B, 1, 1, ...) in like's dtype, for broadcasting."""
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


# ---------------------------------------------------------------- DDIM
def _x0_and_eps(
    eps_fn: EpsFn, x: torch.Tensor, t: int, a: torch.Tensor, clip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predict x0 (optionally clipped) and the epsilon consistent with it."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    eps = eps_fn(x, tt).to(x.dtype)
    a = a.to(x.dtype)
    x0 = x0_from_eps(x, eps, a)
    if clip:
        # Clip the prediction, then re-derive eps from it so that the update
        # stays on the line through x and the (clipped) x0 (guided-diffusion).
        x0 = x0.clamp(-1, 1)
        eps = eps_from_x0(x, x0, a)
    return x0, eps


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn, x_T: torch.Tensor, sched: Respacing, clip_x0: bool = True
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from x_T at the last kept step down to x0.

    Song et al. eq. 12 with sigma_t = 0, stepping between consecutive kept
    steps t_i -> t_{i-1}; alpha_bar before the first kept step is 1, so the
    last update returns the predicted x0 itself.
    """
    x = x_T
    ab = sched.alpha_bar.to(x.device)
    for i in range(sched.T - 1, -1, -1):
        a = ab[i]
        a_prev = ab[i - 1] if i > 0 else torch.ones((), dtype=ab.dtype, device=ab.device)
        x0, eps = _x0_and_eps(eps_fn, x, int(sched.steps[i]), a, clip_x0)
        a_prev = a_prev.to(x.dtype)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


@torch.no_grad()
def ddim_invert(
    eps_fn: EpsFn, x0: torch.Tensor, sched: Respacing, clip_x0: bool = True
) -> torch.Tensor:
    """DDIM run backwards, t = 0 -> T-1 over the kept steps: the stochastic encoder.

    Diff-AE eq. 8 / guided-diffusion's ddim_reverse_sample: at kept step t_i,
    eps is predicted from x_{t_i} and used to move to t_{i+1}; after the last
    kept step alpha_bar_next is 0 (as in the reference), so x_T is the final
    epsilon estimate. Not exact: the true ODE step would need eps at t_{i+1}.
    """
    x = x0
    ab = sched.alpha_bar.to(x.device)
    for i in range(sched.T):
        a = ab[i]
        a_next = ab[i + 1] if i + 1 < sched.T else torch.zeros((), dtype=ab.dtype, device=ab.device)
        x0_hat, eps = _x0_and_eps(eps_fn, x, int(sched.steps[i]), a, clip_x0)
        a_next = a_next.to(x.dtype)
        x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
    return x


# ---------------------------------------------------------------- embeddings
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (original) timesteps, as in guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-np.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
