"""The DDIM baseline: exactly the Diff-AE decoder without z_sem.

PROTOCOL ("Diff-AE", last line): "A DDIM baseline is exactly the decoder
without z_sem" -- the paper's comparison rows (Diff-AE Tables 1-3) use the
same ADM UNet, the same linear schedule, the same L_simple loss and the same
ddimT-respaced DDIM sampler/inverter. So this class adds nothing of its own:
the preset's UNet with `z_dim=None` (which drops the `z_scale` layers of every
ResBlock and nothing else), L_simple (models/loss.py), and the base class's
decode / invert / sample.

It has no semantic latent and no prior: `codes` is empty (its representation
for probes is the DDIM-inverted x_T, which tasks compute for every model
alike), and everything that asks for a semantic code (`encode`,
`sample_latent`, `latent_paths`, a non-None z) raises `NoSemanticLatent`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch

from diffae_bench.models import DiffusionAutoencoder, ModelKind, NoSemanticLatent
from diffae_bench.models.loss import DiffusionLoss
from diffae_bench.nets import UNet, UNetConfig
from diffae_bench.presets import Preset


@dataclass(frozen=True)
class DDIMConfig:
    unet: UNetConfig = UNetConfig(z_dim=None)  # the unconditional denoiser eps_theta(x_t, t); z_dim must be None

    def __post_init__(self):
        # Checked here so that a hand-written config or a tampered checkpoint
        # cannot silently build a z-conditioned "baseline".
        if self.unet.z_dim is not None:
            raise ValueError(f"the DDIM baseline's UNet must have z_dim=None, got {self.unet.z_dim}")


def ddim_config_from_preset(preset: Preset) -> DDIMConfig:
    """The preset's decoder with the z-conditioning removed (nothing else changes)."""
    return DDIMConfig(unet=dataclasses.replace(preset.unet, z_dim=None))


class DDIM(DiffusionAutoencoder):
    kind = "ddim"
    latent_type = None  # no semantic latent
    z_dim = 0

    def __init__(self, cfg: DDIMConfig):
        super().__init__(cfg.unet.prediction)
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self._loss = DiffusionLoss()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.cfg.unet
        return (c.in_channels, c.image_size, c.image_size)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple, exactly as Diff-AE's stage 1 but with no conditioning."""
        return self._loss(lambda x_t, t: self.output_as_eps(self.unet(x_t, t), x_t, t), x0, generator)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None:
            raise NoSemanticLatent(f"the ddim baseline has no semantic latent: it takes z=None "
                                   f"(got a tensor of shape {tuple(z.shape)})")
        return self.output_as_eps(self.unet(x_t, t), x_t, t)

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.cfg)}


KIND = ModelKind(name="ddim", cls=DDIM, config_cls=DDIMConfig, from_preset=ddim_config_from_preset,
                 description="DDIM baseline: the Diff-AE decoder without z_sem (same UNet, schedule and sampler)")
