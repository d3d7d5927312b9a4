"""Cross-attention from the feature map to a code: the DMZ-style decoder's way of reading z.

PROTOCOL ("DMZ-style Bernoulli-latent variant"): "the decoder is conditioned on
z through cross-attention (z embedded as a single token used as keys/values at
the attention resolutions)". The keys and values come from the code alone, so
the attention's output reaches every pixel whole. (Before issue 15, z was one
extra key/value beside the 256 pixel tokens of the self-attention at 16 px and
got ~0.4 % of the attention at init; `z_mode="xattn"` keeps that form for the
checkpoints trained with it.)

With a single key the softmax weight is exactly 1 whatever the query, so the
attention output is the value W_v e(z) at every pixel and a query projection
could never receive a gradient; the layer computes that value directly instead
of carrying dead weights (tests check it against torch's MultiheadAttention
with one key/value token).
"""

from __future__ import annotations

import torch
from torch import nn


class CodeCrossAttention(nn.Module):
    """x + proj(attention of every pixel to the code token); the code token is Linear(z).

    ch: channels of the feature map; z_dim: width of the code. The output
    projection is zero-initialised like every residual branch of the ADM UNet,
    so at init the layer is the identity.
    """

    def __init__(self, ch: int, z_dim: int):
        super().__init__()
        self.to_value = nn.Linear(z_dim, ch)  # the code embedded as one token, through the value projection
        self.proj = nn.Linear(ch, ch)  # attention output projection W_o
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # softmax over one key = 1: each pixel's attention output is the token's value
        out = self.proj(self.to_value(z.to(x.dtype)))  # (B, ch)
        return x + out[..., None, None]
