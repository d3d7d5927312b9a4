"""L_simple (Ho et al. 2020): the training loss every image model here shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import diffusion as D


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

    def __init__(self):
        self.alpha_bar = torch.from_numpy(D.alphas_cumprod(D.linear_betas()))
        self._alpha_bar_on: dict[torch.device, torch.Tensor] = {}  # the same float64 values, per device (no copy a step)

    def alpha_bar_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._alpha_bar_on:
            self._alpha_bar_on[device] = self.alpha_bar.to(device)
        return self._alpha_bar_on[device]

    def __call__(self, eps_fn, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, where = x0.shape[0], draw_device(generator)
        t = torch.randint(0, D.T_TRAIN, (b,), generator=generator, device=where).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=where).to(x0.device)
        x_t = D.q_sample(x0, t, noise, self.alpha_bar_on(x0.device))
        return F.mse_loss(eps_fn(x_t, t).float(), noise.float())
