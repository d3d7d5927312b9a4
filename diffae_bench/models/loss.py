"""L_simple (Ho et al. 2020): the training loss every image model here shares."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable

import torch
import torch.nn.functional as F

from .. import diffusion as D

# Which shard of the global batch this loss call computes: (index, count). A
# training draw (t, noise, the DMZ uniforms) is made for the whole global batch
# and sliced, so shard j of J sees exactly the draws a single process would
# have made for its samples (global rows j, j + J, ...): DDP and gradient
# accumulation then give the single-process gradient (train_step.ShardedLoss).
_SHARD = contextvars.ContextVar("draw_shard", default=(0, 1))


@contextlib.contextmanager
def draw_shard(index: int, count: int):
    token = _SHARD.set((index, count))
    try:
        yield
    finally:
        _SHARD.reset(token)


def sharded(draw: Callable[[int], torch.Tensor], n_local: int) -> torch.Tensor:
    """draw(n) for this call's rows: the whole batch outside a shard, the shard's rows of the global draw inside."""
    index, count = _SHARD.get()
    if count == 1:
        return draw(n_local)
    return draw(n_local * count)[index::count]


def draw_device(generator: torch.Generator | None) -> torch.device | None:
    """Where a training draw (t, noise, uniforms) is made: on the generator's device.

    A CPU generator (bench train on the CPU, the default everywhere before
    issue 21) draws on the CPU and the values are copied over, so a seed gives
    the same run on any device; a CUDA generator (bench train on a GPU) draws
    on the GPU, with no host work or copy per step. None: torch's default.
    """
    return generator.device if generator is not None else None


class DiffusionLoss:
    """Sample t and eps, return L_simple (MSE on eps) of a denoiser eps_fn(x_t, t)."""

    @staticmethod
    def alpha_bar_on(device: torch.device) -> torch.Tensor:
        return D.image_alpha_bar(device)  # the same float64 values, made once per device (no copy a step)

    def __call__(self, eps_fn, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, where = x0.shape[0], draw_device(generator)
        t = sharded(lambda n: torch.randint(0, D.T_TRAIN, (n,), generator=generator, device=where), b).to(x0.device)
        noise = sharded(lambda n: torch.randn((n, *x0.shape[1:]), generator=generator, device=where), b).to(x0.device)
        x_t = D.q_sample(x0, t, noise, self.alpha_bar_on(x0.device))
        return F.mse_loss(eps_fn(x_t, t).float(), noise.float())
