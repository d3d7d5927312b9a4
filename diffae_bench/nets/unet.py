"""The Diff-AE UNet decoder and semantic encoder (Dhariwal & Nichol's ADM UNet).

Conditioning (PROTOCOL, Diff-AE paper eq. 7, "AdaGN"): in every ResBlock

    h = GN(h) * (1 + t_s) + t_b          (t_s, t_b) = Linear(SiLU(t_emb))
    h = h * (1 + z_s)                    z_s = Linear(SiLU(z_sem))   (scale only)

in every input, middle and output block. The last conv of each decoder block and
the output conv are zero-initialised (ADM), and ResBlocks do the up/down-sampling.
With `z_dim=None` the same network is the plain DDIM baseline. A DMZ-style
decoder instead reads z through a cross-attention layer after each attention
block, with the code alone as keys and values (`z_mode="xattn_code"`,
nets/code_attention.py), or adds it to the time embedding (`z_mode="temb"`, the
ablation). `z_mode="xattn"` is the form used before issue 15, kept for the
checkpoints trained with it: z as one extra key/value token beside the pixel
tokens of the self-attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..diffusion import PREDICTIONS, timestep_embedding
from .code_attention import CodeCrossAttention

Z_MODES = ("adagn", "xattn_code", "xattn", "temb")
ENCODER_BLOCKS = ("official", "legacy")  # see EncoderConfig.res_block


@dataclass(frozen=True)
class UNetConfig:
    image_size: int = 32  # input resolution (square)
    in_channels: int = 3  # image channels (1 for MNIST / dSprites)
    base_channels: int = 64  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # width multiplier per level
    num_res_blocks: int = 2  # ResBlocks per level on the way down
    attn_resolutions: tuple[int, ...] = (16,)  # feature-map sizes with self-attention
    num_heads: int = 1  # attention heads (the paper's 64 px model: one)
    dropout: float = 0.1  # dropout inside ResBlocks
    z_dim: int | None = 512  # semantic latent width; None = unconditional DDIM
    z_mode: str = "adagn"  # how z enters: adagn (Diff-AE), xattn_code / temb (DMZ-style), xattn (legacy DMZ)
    # Time-embedding width. The official Diff-AE sets embed_channels = 512 at
    # every resolution (BeatGANsUNetConfig / TrainConfig.net_beatgans_embed_channels);
    # None = 4 x base_channels, the ADM rule that checkpoints written before this
    # field was added were trained with (so a stored config without it gets None).
    embed_channels: int | None = 512
    # What the output is read as: "eps" (the paper's, Ho et al.) or "v" (Salimans & Ho 2022; a
    # departure, README "Departures"). The network is the same; the model turns v into eps
    # (DiffusionAutoencoder.output_as_eps), so the loss stays L_simple and samplers see eps.
    # Checkpoints written before this field was added predict eps, the default.
    prediction: str = "eps"

    ABSENT_FIELD_VALUES: ClassVar[dict] = {"embed_channels": None}

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")


@dataclass(frozen=True)
class EncoderConfig:
    image_size: int = 32  # input resolution (square)
    in_channels: int = 3  # image channels
    base_channels: int = 64  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2, 2, 2)  # the paper: one more level than the decoder
    num_res_blocks: int = 2  # ResBlocks per level
    attn_resolutions: tuple[int, ...] = (16,)  # feature-map sizes with self-attention
    num_heads: int = 1  # attention heads
    dropout: float = 0.1  # dropout inside ResBlocks ("legacy" blocks only: the official encoder block has none)
    z_dim: int = 512  # output width d (512 in the paper)
    # GroupNorm before pooling: k channels a group (16: the paper's 512-ch head has 32
    # groups of 16; kept for narrow heads by measurement, see head_norm); None = the
    # official normalization(ch), 32 groups at any width
    head_channels_per_group: int | None = 16
    # "official": the Diff-AE encoder's ResBlock (BeatGANsEncoderModel, use_condition=False):
    # skip + GN -> SiLU -> 3x3 conv, default init, no dropout. "legacy": the decoder's
    # ResBlock without conditioning (second GN, dropout, zero-initialised conv), which
    # checkpoints written before this field was added were trained with.
    res_block: str = "official"

    ABSENT_FIELD_VALUES: ClassVar[dict] = {"res_block": "legacy"}


def norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, fewer for layers narrower than 32 channels."""
    return nn.GroupNorm(math.gcd(32, ch), ch)


def head_norm(ch: int, channels_per_group: int | None) -> nn.GroupNorm:
    """The encoder head's GroupNorm: official (None: 32 groups), or k channels a group in narrow encoders.

    With 32 groups a 32-channel head has one channel a group: GroupNorm then
    removes every channel's spatial mean, and the globally pooled code that
    follows is almost the same for every image. Re-measured with the official
    encoder block (scripts/encoder_ab.py; README "Departures"), the decoder's
    loss gap between shuffled and own z at t = 300 with GroupNorm(32) against
    16 channels a group: tiny (32-ch head, 900 steps) +0.03 vs +0.14, small
    (64-ch head, 2,000 steps) +0.37 vs +0.91. The paper's 512-channel head
    (32 groups of 16) is the same under both rules.
    """
    if channels_per_group is None:
        return norm(ch)
    groups = max(1, min(32, ch // channels_per_group))
    while ch % groups:
        groups -= 1
    return nn.GroupNorm(groups, ch)


def zero_module(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class ResBlock(nn.Module):
    """ADM ResBlock with AdaGN time (scale, shift) and z (scale) conditioning."""

    def __init__(self, ch: int, out_ch: int, emb_dim: int | None, z_dim: int | None, dropout: float,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.in_norm = norm(ch)
        self.in_conv = nn.Conv2d(ch, out_ch, 3, padding=1)
        self.up, self.down = up, down
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_ch)) if emb_dim else None
        self.z_scale = nn.Sequential(nn.SiLU(), nn.Linear(z_dim, out_ch)) if z_dim else None
        self.out_norm = norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if ch == out_ch else nn.Conv2d(ch, out_ch, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.in_norm(x))
        h = self.in_conv(self._resample(h))
        x = self._resample(x)
        h = self.out_norm(h)
        if self.emb is not None:
            t_s, t_b = self.emb(emb)[..., None, None].chunk(2, dim=1)
            h = h * (1 + t_s) + t_b
        if self.z_scale is not None:
            h = h * (1 + self.z_scale(z)[..., None, None])
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class EncoderResBlock(nn.Module):
    """The official semantic encoder's ResBlock: skip path plus `in_layers` only.

    Diff-AE's BeatGANsEncoderModel builds its ResBlocks with use_condition=False,
    which skips the whole `if conf.use_condition:` branch of model/blocks.py:
    no out_layers (second GroupNorm, dropout, zero-initialised conv) and no
    conditioning. What is left is x -> skip(x) + conv3x3(SiLU(GN(x))), resampled
    between the activation and the conv like the decoder's up/down blocks; the
    conv keeps PyTorch's default initialisation.
    """

    def __init__(self, ch: int, out_ch: int, down: bool = False):
        super().__init__()
        self.in_norm = norm(ch)
        self.in_conv = nn.Conv2d(ch, out_ch, 3, padding=1)
        self.down = down
        self.skip = nn.Identity() if ch == out_ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.in_norm(x))
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        return self.skip(x) + self.in_conv(h)


class AttentionBlock(nn.Module):
    """Self-attention over pixels; optionally z as one extra key/value token.

    With `z_dim` set (DMZ-style cross-attention), z is embedded to one token
    that every pixel can attend to alongside the pixels themselves.
    """

    def __init__(self, ch: int, num_heads: int, z_dim: int | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.norm = norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.z_kv = nn.Linear(z_dim, 2 * ch) if z_dim else None
        self.proj = zero_module(nn.Conv1d(ch, ch, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(b, c, -1)).chunk(3, dim=1)  # (b, c, n) each
        if self.z_kv is not None:
            zk, zv = self.z_kv(z)[..., None].chunk(2, dim=1)  # (b, c, 1) each
            k, v = torch.cat([k, zk], dim=2), torch.cat([v, zv], dim=2)
        heads = lambda u: u.reshape(b, self.num_heads, c // self.num_heads, -1).transpose(-1, -2)
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (b, h, n, c/h)
        out = out.transpose(-1, -2).reshape(b, c, -1)
        return x + self.proj(out).reshape(b, c, hgt, wid)


class Block(nn.Module):
    """A ResBlock, optionally followed by attention and cross-attention to the code, passing conditioning on."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None, code_attn: nn.Module | None = None):
        super().__init__()
        self.res, self.attn, self.code_attn = res, attn, code_attn  # None adds nothing to the state dict

    def forward(self, h, emb, z_res, z_attn):
        h = self.res(h, emb, z_res)
        if self.attn is not None:
            h = self.attn(h, z_attn)
        return self.code_attn(h, z_attn) if self.code_attn is not None else h


def check_image_size(image_size: int, levels: int, what: str) -> None:
    """The UNet halves the resolution levels-1 times; it must divide evenly."""
    if image_size % (2 ** (levels - 1)):
        from ..errors import BenchError

        raise BenchError(
            f"image size {image_size} does not fit the {what}: {levels} levels need a multiple of {2 ** (levels - 1)}"
        )


class UNet(nn.Module):
    """eps_theta(x_t, t, z_sem): the Diff-AE decoder (z_dim=None: plain DDIM)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        check_image_size(cfg.image_size, len(cfg.channel_mult), "UNet")
        if cfg.z_mode not in Z_MODES:
            raise ValueError(f"z_mode must be one of {Z_MODES}")
        self.cfg = cfg
        ch0 = cfg.base_channels
        emb_dim = cfg.embed_channels or 4 * ch0
        self.time_embed = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        zd = cfg.z_dim
        # Which modules see z, by z_mode (AdaGN everywhere, or attention only, or t_emb).
        z_res = zd if (zd and cfg.z_mode == "adagn") else None
        z_att = zd if (zd and cfg.z_mode == "xattn") else None
        z_code = zd if (zd and cfg.z_mode == "xattn_code") else None
        self.z_to_temb = nn.Sequential(nn.SiLU(), nn.Linear(zd, emb_dim)) if (zd and cfg.z_mode == "temb") else None
        if zd and cfg.z_mode in ("xattn", "xattn_code") and not cfg.attn_resolutions:
            raise ValueError(f"z_mode={cfg.z_mode!r} needs at least one attention resolution")

        def block(ch_in, ch_out, attn, **updown):
            res = ResBlock(ch_in, ch_out, emb_dim, z_res, cfg.dropout, **updown)
            code_attn = CodeCrossAttention(ch_out, z_code) if (attn and z_code) else None
            return Block(res, AttentionBlock(ch_out, cfg.num_heads, z_att) if attn else None, code_attn)

        self.conv_in = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)
        self.down = nn.ModuleList()
        skip_chs, ch, res = [ch0], ch0, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(ch, ch0 * mult, res in cfg.attn_resolutions))
                ch = ch0 * mult
                skip_chs.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(block(ch, ch, False, down=True))
                skip_chs.append(ch)
                res //= 2
        self.mid = nn.ModuleList([block(ch, ch, True), block(ch, ch, False)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                self.up.append(block(ch + skip_chs.pop(), ch0 * mult, res in cfg.attn_resolutions))
                ch = ch0 * mult
                if level and i == cfg.num_res_blocks:
                    self.up.append(block(ch, ch, False, up=True))
                    res *= 2
        self.out = nn.Sequential(norm(ch), nn.SiLU(), zero_module(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))
        # Output blocks that only resample take no skip connection.
        self._up_takes_skip = [not blk.res.up for blk in self.up]

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if (self.cfg.z_dim is None) != (z is None):
            raise ValueError("z must be given exactly when the UNet has z_dim")
        emb = self.time_embed(timestep_embedding(t, self.cfg.base_channels).to(x.dtype))
        if self.z_to_temb is not None:
            emb = emb + self.z_to_temb(z)
        z_res = z if self.cfg.z_mode == "adagn" else None
        z_att = z if self.cfg.z_mode in ("xattn", "xattn_code") else None
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down:
            h = blk(h, emb, z_res, z_att)
            skips.append(h)
        for blk in self.mid:
            h = blk(h, emb, z_res, z_att)
        for blk, takes_skip in zip(self.up, self._up_takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = blk(h, emb, z_res, z_att)
        return self.out(h)


class SemanticEncoder(nn.Module):
    """z_sem = Enc(x0): the UNet's first half without time input, pooled to d.

    PROTOCOL: down path and middle block, then GN -> SiLU -> global average
    pool -> 1x1 conv to d -> flatten. It sees the clean x0. Its ResBlocks are
    the official encoder's (EncoderResBlock), or the decoder's ResBlock
    without conditioning for checkpoints that predate `res_block`.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        check_image_size(cfg.image_size, len(cfg.channel_mult), "semantic encoder")
        if cfg.res_block not in ENCODER_BLOCKS:
            raise ValueError(f"res_block must be one of {ENCODER_BLOCKS}")
        self.cfg = cfg
        ch0 = cfg.base_channels

        def block(ch_in, ch_out, attn, **updown):
            if cfg.res_block == "official":
                res = EncoderResBlock(ch_in, ch_out, **updown)
            else:
                res = ResBlock(ch_in, ch_out, None, None, cfg.dropout, **updown)
            return Block(res, AttentionBlock(ch_out, cfg.num_heads) if attn else None)

        self.conv_in = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)
        blocks, ch, res = [], ch0, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks.append(block(ch, ch0 * mult, res in cfg.attn_resolutions))
                ch = ch0 * mult
            if level < len(cfg.channel_mult) - 1:
                blocks.append(block(ch, ch, False, down=True))
                res //= 2
        blocks += [block(ch, ch, True), block(ch, ch, False)]  # middle block
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(head_norm(ch, cfg.head_channels_per_group), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, cfg.z_dim, 1), nn.Flatten())

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x0)
        for blk in self.blocks:
            h = blk(h, None, None, None)
        return self.out(h)
