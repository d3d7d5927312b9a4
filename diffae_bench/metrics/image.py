"""Pure image-metric cores: tensors in, per-image values out (PROTOCOL "Metrics, exactly").

Inputs are images in [-1, 1], shape (B, C, H, W); they are mapped to [0, 1]
for SSIM, MSE and PSNR, as in the Diff-AE evaluation code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] in float64 (metrics are cheap; keep them exact)."""
    return ((x.double() + 1) / 2).clamp(0, 1)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over C, H, W, on [0, 1] images."""
    return (to_unit(a) - to_unit(b)).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for data range 1 (inf for identical images)."""
    return 10 * torch.log10(1.0 / mse(a, b))


def corner_means(x: torch.Tensor, size: int = 4) -> torch.Tensor:
    """Per-image mean of the four size x size corners, in [0, 1] units: the background.

    Every real shapes and MNIST image has a black background (0), and a sampler
    that starts from a wrong high-t x0 keeps a grey or coloured one (issue 21's
    diagnostic: the mean of the four 4x4 corners). Averaged over channels.
    """
    u = to_unit(x)
    corners = (u[..., :size, :size], u[..., :size, -size:], u[..., -size:, :size], u[..., -size:, -size:])
    return torch.stack([c.flatten(1).mean(1) for c in corners], 1).mean(1)


def abs_ci(ci: tuple[float, float]) -> tuple[float, float]:
    """A CI for |mu| from a CI [lo, hi] for mu: [0, max] when it spans 0, else the bounds' absolute values."""
    lo, hi = ci
    if lo <= 0 <= hi:
        return (0.0, max(-lo, hi))
    return (min(abs(lo), abs(hi)), max(abs(lo), abs(hi)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5,
    C1 = 0.01^2, C2 = 0.03^2, data range 1, population covariances, averaged
    over the 'valid' positions and the channels.

    Equal to skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0),
    which also discards the border where the window does not fit.
    """
    x, y = to_unit(a), to_unit(b)
    c = x.shape[1]
    w = _gaussian_window(size, sigma).to(x.device).expand(c, 1, size, size)
    filt = lambda u: F.conv2d(u, w, groups=c)
    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
