"""Diff-AE (Preechakul et al., CVPR 2022): semantic encoder + conditional DDIM + latent DDIM.

Training (stage 1, paper eq. 9): L_simple = || eps_theta(x_t, t, Enc(x0)) - eps ||^2,
with the encoder seeing the clean x0 and trained only through this loss.
Stage 2 (paper Sec. 3.2): the latent DDIM prior (models/priors.py) on the
frozen encoder's codes. Decoding, inversion and sampling are the base class's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..nets import EncoderConfig, LatentMLPConfig, SemanticEncoder, UNet, UNetConfig
from .base import DiffusionAutoencoder
from .loss import DiffusionLoss
from .priors import LatentDDIMPrior
from .registry import ModelKind


@dataclass(frozen=True)
class DiffAEConfig:
    unet: UNetConfig  # the conditional decoder eps_theta(x_t, t, z_sem)
    encoder: EncoderConfig  # the semantic encoder Enc(x0) -> z_sem
    latent: LatentMLPConfig  # the latent DDIM's denoiser


class DiffAE(DiffusionAutoencoder):
    kind = "diffae"
    latent_type = "continuous"
    # Before issue 14 the latent DDIM's tensors sat at the top level of the state dict.
    LEGACY_STATE_KEYS = {"latent_net.": "prior.net.", "z_mean": "prior.z_mean", "z_std": "prior.z_std",
                         "latent_trained": "prior.trained"}

    def __init__(self, cfg: DiffAEConfig):
        super().__init__(cfg.unet.prediction)
        if cfg.unet.z_dim != cfg.encoder.z_dim or cfg.latent.z_dim != cfg.encoder.z_dim:
            raise ValueError("decoder, encoder and latent DDIM must agree on z_dim")
        self.cfg = cfg
        self.z_dim = cfg.encoder.z_dim
        self.encoder = SemanticEncoder(cfg.encoder)
        self.unet = UNet(cfg.unet)
        self.prior = LatentDDIMPrior(cfg.latent)
        self._loss = DiffusionLoss()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.cfg.unet
        return (c.in_channels, c.image_size, c.image_size)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.encoder(x0)  # the encoder sees the clean image
        return self._loss(lambda x_t, t: self.output_as_eps(self.unet(x_t, t, z), x_t, t), x0, generator)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if z is None:
            raise ValueError("Diff-AE's decoder needs z_sem")
        return self.output_as_eps(self.unet(x_t, t, z), x_t, t)

    @torch.no_grad()
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.encoder(x0)

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.cfg)}


def _config_from_preset(preset) -> DiffAEConfig:
    return DiffAEConfig(unet=preset.unet, encoder=preset.encoder, latent=preset.latent)


# What the model registry lists under "diffae" (it names this module; it never imports it).
KIND = ModelKind(name="diffae", cls=DiffAE, config_cls=DiffAEConfig, from_preset=_config_from_preset,
                 description="Diff-AE: semantic encoder + AdaGN-conditioned DDIM + latent DDIM (Preechakul et al. 2022)")
