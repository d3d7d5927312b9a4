"""Diff-AE (Preechakul et al., CVPR 2022): semantic encoder + conditional DDIM + latent DDIM.

Training (stage 1, paper eq. 9): L_simple = || eps_theta(x_t, t, Enc(x0)) - eps ||^2,
with the encoder seeing the clean x0 and trained only through this loss.
Stage 2 (paper Sec. 3.2, Table 6): with the encoder frozen, a latent DDIM is
fitted to z_sem standardised per dimension with the training set's mean/std,
L1 loss on epsilon, constant beta = 0.008 over 1000 steps; samples are
un-standardised afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import diffusion as D
from . import rng
from .interface import DiffusionAutoencoder
from .nets import EncoderConfig, LatentMLP, LatentMLPConfig, SemanticEncoder, UNet, UNetConfig
from .errors import BenchError


@dataclass(frozen=True)
class DiffAEConfig:
    unet: UNetConfig  # the conditional decoder eps_theta(x_t, t, z_sem)
    encoder: EncoderConfig  # the semantic encoder Enc(x0) -> z_sem
    latent: LatentMLPConfig  # the latent DDIM's denoiser


class LatentNotTrained(BenchError):
    pass


def draw_device(generator: torch.Generator | None) -> torch.device | None:
    """Where a training draw (t, noise, uniforms) is made: on the generator's device.

    A CPU generator (bench train on the CPU, the default everywhere before
    issue 21) draws on the CPU and the values are copied over, so a seed gives
    the same run on any device; a CUDA generator (bench train on a GPU) draws
    on the GPU, with no host work or copy per step. None: torch's default.
    """
    return generator.device if generator is not None else None


class DiffusionLoss:
    """Shared by every image model: sample t and eps, return L_simple (MSE on eps)."""

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


class DiffAE(DiffusionAutoencoder):
    kind = "diffae"
    latent_type = "continuous"

    def __init__(self, cfg: DiffAEConfig):
        super().__init__()
        if cfg.unet.z_dim != cfg.encoder.z_dim or cfg.latent.z_dim != cfg.encoder.z_dim:
            raise ValueError("decoder, encoder and latent DDIM must agree on z_dim")
        self.cfg = cfg
        self.z_dim = cfg.encoder.z_dim
        self.encoder = SemanticEncoder(cfg.encoder)
        self.unet = UNet(cfg.unet)
        self.latent_net = LatentMLP(cfg.latent)
        # Standardisation of z_sem for the latent DDIM (set by fit_latent_stats).
        self.register_buffer("z_mean", torch.zeros(self.z_dim))
        self.register_buffer("z_std", torch.ones(self.z_dim))
        self.register_buffer("latent_trained", torch.zeros((), dtype=torch.bool))
        self._loss = DiffusionLoss()
        self._latent_alpha_bar = torch.from_numpy(D.alphas_cumprod(D.constant_betas()))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.cfg.unet
        return (c.in_channels, c.image_size, c.image_size)

    # -- stage 1 ---------------------------------------------------------------
    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.encoder(x0)  # the encoder sees the clean image
        return self._loss(lambda x_t, t: self.unet(x_t, t, z), x0, generator)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if z is None:
            raise ValueError("Diff-AE's decoder needs z_sem")
        return self.unet(x_t, t, z)

    def autoencoder_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("latent_net.")]

    # -- stage 2 ---------------------------------------------------------------
    def fit_latent_stats(self, z: torch.Tensor) -> None:
        self.z_mean.copy_(z.mean(0))
        self.z_std.copy_(z.std(0).clamp_min(1e-6))

    def latent_loss(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 on epsilon for standardised z, constant beta 0.008 (Table 6)."""
        zs = (z - self.z_mean) / self.z_std
        b = zs.shape[0]
        t = torch.randint(0, D.T_TRAIN, (b,), generator=generator, device=draw_device(generator)).to(z.device)
        noise = torch.randn(zs.shape, generator=generator, device=draw_device(generator)).to(z.device)
        z_t = D.q_sample(zs, t, noise, self._latent_alpha_bar)
        return F.l1_loss(self.latent_net(z_t, t), noise)

    # -- the interface -----------------------------------------------------------
    @torch.no_grad()
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.encoder(x0)

    @torch.no_grad()
    def encode_stochastic(self, x0: torch.Tensor, T: int, z: torch.Tensor | None = None) -> torch.Tensor:
        z = self.encode(x0) if z is None else z
        return D.ddim_invert(lambda x, t: self.unet(x, t, z), x0, D.respace(T))

    @torch.no_grad()
    def decode(self, z: torch.Tensor | None, x_T: torch.Tensor, T: int) -> torch.Tensor:
        if z is None:
            raise ValueError("Diff-AE decoding needs z_sem")
        return D.ddim_sample(lambda x, t: self.unet(x, t, z), x_T, D.respace(T))

    @torch.no_grad()
    def sample_latent(self, n: int, T_latent: int, generator: rng.Generator = None) -> torch.Tensor:
        if not bool(self.latent_trained):
            raise LatentNotTrained(
                "this Diff-AE has no trained latent DDIM; train one with: bench train --stage latent --out RUN_DIR"
            )
        z_T = rng.randn((n, self.z_dim), generator).to(self.device)
        sched = D.respace(T_latent, D.constant_betas())
        # Standardised z is unbounded: no x0 clipping in latent space (reference code).
        zs = D.ddim_sample(self.latent_net, z_T, sched, clip_x0=False)
        return zs * self.z_std + self.z_mean

    def describe(self) -> dict:
        return {**super().describe(), "latent_trained": bool(self.latent_trained), "config": asdict(self.cfg)}
