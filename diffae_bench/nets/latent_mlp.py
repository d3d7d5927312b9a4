"""The latent DDIM's denoiser: "MLP + skip" (Diff-AE Appendix A.1, Fig. 8, Table 6).

N layers; the raw noisy z is concatenated to the input of every layer after
the first (the skip); each hidden layer is

    Linear -> h * (1 + Linear(SiLU(t_emb))) -> LayerNorm -> SiLU

and the last layer is a plain Linear back to d. t conditions by scaling the
hidden units only (the paper: "conditioned on t by scaling").

The official form (`arch="official"`, the released code's model/latentnet.py,
MLPSkipNet with skip_layers 1..N-1, use_norm, condition_bias 1, SiLU) embeds t
at the width of z (Linear(64, d) -> SiLU -> Linear(d, d)), gives each hidden
layer a d -> hidden condition layer, and Kaiming-normal initialises every
hidden layer's two Linear weights (MLPLNAct.init_weights, nonlinearity "relu"
for SiLU); the time embedding and the last layer keep PyTorch's default init.
`arch="legacy"` embeds t at the hidden width with hidden x hidden condition
layers and default init: what checkpoints written before the field existed
hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..diffusion import timestep_embedding

LATENT_ARCHS = ("official", "legacy")


@dataclass(frozen=True)
class LatentMLPConfig:
    z_dim: int = 512  # width of z_sem
    num_layers: int = 10  # N (10 in the paper for CelebA / FFHQ)
    hidden: int = 2048  # hidden width (2048 in the paper)
    t_channels: int = 64  # sinusoidal time-embedding width
    dropout: float = 0.0  # dropout after each hidden activation
    arch: str = "official"  # "official" (released MLPSkipNet) or "legacy" (pre-parity checkpoints); see the module doc

    ABSENT_FIELD_VALUES: ClassVar[dict] = {"arch": "legacy"}


class LatentMLP(nn.Module):
    def __init__(self, cfg: LatentMLPConfig):
        super().__init__()
        if cfg.num_layers < 2:
            raise ValueError("the latent MLP needs at least 2 layers")
        if cfg.arch not in LATENT_ARCHS:
            raise ValueError(f"arch must be one of {LATENT_ARCHS}")
        self.cfg = cfg
        w, d = cfg.hidden, cfg.z_dim
        e = d if cfg.arch == "official" else w  # width of the time embedding
        self.time_embed = nn.Sequential(nn.Linear(cfg.t_channels, e), nn.SiLU(), nn.Linear(e, e))
        self.linears = nn.ModuleList()
        self.t_scales = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(cfg.num_layers):
            last = i == cfg.num_layers - 1
            fan_in = d if i == 0 else w + d  # skip: concat the noisy z after layer 0
            self.linears.append(nn.Linear(fan_in, d if last else w))
            if not last:
                self.t_scales.append(nn.Sequential(nn.SiLU(), nn.Linear(e, w)))
                self.norms.append(nn.LayerNorm(w))
        self.dropout = nn.Dropout(cfg.dropout)
        self._official_init()

    def _official_init(self) -> None:
        if self.cfg.arch != "official":
            return
        for lin, t_scale in zip(self.linears, self.t_scales):  # the hidden layers (the last has no t_scale)
            for m in (lin, t_scale[1]):
                nn.init.kaiming_normal_(m.weight, a=0, nonlinearity="relu")

    def reset_parameters(self) -> None:
        """A fresh initialisation (the latent stage re-draws it from its own seed)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        self._official_init()

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.cfg.t_channels).to(z_t.dtype))
        h = z_t
        for i, lin in enumerate(self.linears):
            if i > 0:
                h = torch.cat([h, z_t], dim=1)
            h = lin(h)
            if i < len(self.norms):
                h = h * (1 + self.t_scales[i](emb))
                h = self.dropout(torch.nn.functional.silu(self.norms[i](h)))
        return h
