"""The DDIM baseline: exactly the Diff-AE decoder without z_sem.

PROTOCOL ("Diff-AE", last line): "A DDIM baseline is exactly the decoder
without z_sem" -- the paper's comparison rows (Diff-AE Tables 1-3) use the
same ADM UNet, the same linear schedule, the same L_simple loss and the same
ddimT-respaced DDIM sampler/inverter. So this class adds nothing of its own:
the preset's UNet with `z_dim=None` (which drops the `z_scale` layers of every
ResBlock and nothing else), `diffae_bench.diffae.DiffusionLoss`, and
`diffae_bench.diffusion.ddim_sample / ddim_invert / respace`.

It has no semantic latent. Its representation for probes is the DDIM-inverted
x_T, which the tasks compute themselves for every model alike, so
`representations()` is the interface default ({}), and everything that asks
for a semantic code (`encode`, `sample_latent`, `latent_paths`, a non-None z
in `decode` / `encode_stochastic`) raises `NoSemanticLatent`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch

from diffae_bench import diffusion as D
from diffae_bench.diffae import DiffusionLoss
from diffae_bench.interface import DiffusionAutoencoder, NoSemanticLatent
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
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg.unet)
        self._loss = DiffusionLoss()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c = self.cfg.unet
        return (c.in_channels, c.image_size, c.image_size)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_simple, exactly as Diff-AE's stage 1 but with no conditioning."""
        return self._loss(lambda x_t, t: self.unet(x_t, t), x0, generator)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        self._no_z(z, "predict_eps")
        return self.unet(x_t, t)

    def _no_z(self, z: torch.Tensor | None, what: str) -> None:
        if z is not None:
            raise NoSemanticLatent(
                f"the ddim baseline has no semantic latent: {what} takes z=None (got a tensor of shape {tuple(z.shape)})"
            )

    @torch.no_grad()
    def encode_stochastic(self, x0: torch.Tensor, T: int, z: torch.Tensor | None = None) -> torch.Tensor:
        self._no_z(z, "encode_stochastic")
        return D.ddim_invert(lambda x, t: self.unet(x, t), x0, D.respace(T))

    @torch.no_grad()
    def decode(self, z: torch.Tensor | None, x_T: torch.Tensor, T: int) -> torch.Tensor:
        self._no_z(z, "decode")
        return D.ddim_sample(lambda x, t: self.unet(x, t), x_T, D.respace(T))

    def latent_paths(self, z_a: torch.Tensor, z_b: torch.Tensor, n_points: int) -> dict[str, torch.Tensor]:
        # The interface default would happily lerp whatever it is given; a
        # model without codes has no latent path (tasks slerp x_T themselves).
        raise NoSemanticLatent("the ddim baseline has no semantic latent to interpolate; interpolate x_T instead")

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.cfg)}
