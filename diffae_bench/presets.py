"""Model presets as frozen dataclasses (nanoGPT style: one commented default per field).

- tiny:    seconds-fast, for tests and smoke runs.
- small:   32 x 32, trainable on a 2-core CPU in tens of minutes; the reference models.
- paper64: the paper's CelebA-64 / FFHQ-64 configuration (Diff-AE Tables 5 and 6),
           for users with a GPU.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar
from dataclasses import dataclass

from .nets import EncoderConfig, LatentMLPConfig, UNetConfig
from .registry import Registry


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64  # images per step (paper: 128)
    lr: float = 1e-4  # Adam learning rate (paper: 1e-4, no weight decay)
    ema_decay: float = 0.9999  # EMA of the weights used for evaluation (paper: 0.9999)
    grad_clip: float = 1.0  # global grad-norm clip, as in the reference code
    latent_batch_size: int = 512  # latent DDIM batch (paper Table 6: 512 on CelebA)
    latent_lr: float = 1e-4  # latent DDIM learning rate (paper: 1e-4)
    latent_weight_decay: float = 0.0  # AdamW weight decay for the latent DDIM (paper CelebA: 0.01)
    latent_ema_decay: float = 0.999  # EMA of the latent DDIM weights

    # Stored by checkpoints before issue 14, never read by any trainer: ignored when read back.
    DROPPED_FIELDS: ClassVar[tuple] = ("warmup_steps",)


@dataclass(frozen=True)
class Preset:
    name: str  # registry name
    image_size: int  # native resolution; other sizes are allowed if divisible
    unet: UNetConfig  # the decoder (and the DDIM baseline, without z)
    encoder: EncoderConfig  # the semantic encoder
    latent: LatentMLPConfig  # the latent DDIM denoiser
    train: TrainConfig  # optimisation defaults

    def for_data(self, in_channels: int, image_size: int) -> "Preset":
        """The same preset for a data set's channel count and resolution."""
        return dataclasses.replace(
            self,
            image_size=image_size,
            unet=dataclasses.replace(self.unet, in_channels=in_channels, image_size=image_size),
            encoder=dataclasses.replace(self.encoder, in_channels=in_channels, image_size=image_size),
        )


PRESETS: Registry[Preset] = Registry("preset", group="diffae_bench.presets")  # other packages: entry points

PRESETS.add("tiny", Preset(
    name="tiny",
    image_size=32,
    unet=UNetConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), dropout=0.0, z_dim=32,
                    embed_channels=64),
    encoder=EncoderConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0, z_dim=32),
    latent=LatentMLPConfig(z_dim=32, num_layers=3, hidden=128),
    train=TrainConfig(batch_size=32, lr=2e-3, ema_decay=0.99, latent_batch_size=128, latent_lr=1e-3, latent_ema_decay=0.99),
))

PRESETS.add("small", Preset(
    name="small",
    image_size=32,
    unet=UNetConfig(base_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1, z_dim=128,
                    embed_channels=128),
    encoder=EncoderConfig(base_channels=32, channel_mult=(1, 2, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,), dropout=0.1, z_dim=128),
    latent=LatentMLPConfig(z_dim=128, num_layers=6, hidden=512),
    train=TrainConfig(batch_size=64, lr=2e-4, ema_decay=0.999, latent_batch_size=256, latent_lr=3e-4),
))

# Diff-AE Table 5 (CelebA 64 / FFHQ 64) and Table 6 (latent DDIM, CelebA).
PRESETS.add("paper64", Preset(
    name="paper64",
    image_size=64,
    unet=UNetConfig(image_size=64, base_channels=64, channel_mult=(1, 2, 4, 8), num_res_blocks=2, attn_resolutions=(16,),
                    dropout=0.1, z_dim=512, embed_channels=512),
    encoder=EncoderConfig(image_size=64, base_channels=64, channel_mult=(1, 2, 4, 8, 8), num_res_blocks=2, attn_resolutions=(16,),
                          dropout=0.1, z_dim=512),
    latent=LatentMLPConfig(z_dim=512, num_layers=10, hidden=2048),
    train=TrainConfig(batch_size=128, lr=1e-4, ema_decay=0.9999, latent_batch_size=512, latent_lr=1e-4, latent_weight_decay=0.01, latent_ema_decay=0.9999),
))
