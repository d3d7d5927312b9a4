"""`shapes`: procedurally drawn coloured sprites with known generative factors.

The default data set: it needs no files, builds in about a second, and every
image comes with the exact factors that drew it (shape, colour, size, x, y,
rotation), so probes and disentanglement measures have ground truth.

Geometry is resolution independent: positions and sizes are fractions of the
image side, so the same seed at another image_size draws the same scene.
Pixel column c covers [c, c+1) and has its centre at (c + 0.5) / W.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ._common import check_image_size, check_options
from .base import SPLITS, ImageDataset

SHAPES = ("circle", "square", "triangle", "cross")
PALETTE = (  # saturated so that colour is unambiguous even at 8 px
    ("red", (230, 40, 40)),
    ("orange", (250, 150, 30)),
    ("yellow", (240, 220, 40)),
    ("green", (40, 190, 70)),
    ("blue", (40, 100, 240)),
    ("purple", (170, 70, 220)),
)
COLOUR_NAMES = tuple(n for n, _ in PALETTE)
COLOURS = np.array([c for _, c in PALETTE], dtype=np.float32)
WARM = ("red", "orange", "yellow")

# size = circumradius / image side: every shape fits in a circle of that radius,
# so centres in POS_RANGE with size <= 0.25 never clip a sprite at the border,
# whatever its rotation.
SIZE_RANGE = (0.12, 0.25)
POS_RANGE = (0.25, 0.75)
# Rotation in degrees over a quarter turn: the largest range in which every
# non-circle shape's angle is identifiable from its pixels (square and cross
# repeat every 90 degrees, the triangle every 120). Circles ignore it.
ROT_RANGE = (0.0, 90.0)
CROSS_WIDTH = 0.35  # arm half-width / arm half-length

FACTORS = ("shape", "colour", "size", "x", "y", "rotation")  # every column draw_factors samples
BINARY = ("is_circle", "is_large", "is_left", "is_top", "is_warm")
_SPLIT_CODE = {"train": 0, "test": 1}
_STREAM = 0x5348  # "SH": keeps these streams apart from any other use of the seed
_CHUNK = 1024  # images per vectorised step: ~4 MB float32 per array at 32 px


def load(
    split: str = "train",
    *,
    root=None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    check_options("shapes", options, ("n_train", "n_test"))
    size = check_image_size(32 if image_size is None else image_size, minimum=8)
    n = int(options.get(f"n_{split}", 20_000 if split == "train" else 2_000))
    if n < 1:
        raise DataError(f"shapes: n_{split} must be >= 1, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"shapes: seed must be a non-negative integer, got {seed!r}")
    factors = draw_factors(n, seed, split)
    if limit is not None:
        # Factors are drawn row by row, so the first `limit` rows are the same
        # as in the full split: render only those.
        factors = factors.iloc[: max(int(limit), 1)].reset_index(drop=True)
    images = render(factors, size)
    return ImageDataset(
        name="shapes",
        split=split,
        attributes=factors,
        image_shape=(3, size, size),
        images=images,
        binary_attributes=BINARY,
        class_column="shape",
        factors=FACTORS,
        source="procedural",
        meta={"image_size": size, "seed": int(seed), f"n_{split}": n, "generator": "shapes-v1"},
    )


def draw_factors(n: int, seed: int, split: str) -> pd.DataFrame:
    """The factor table for a split: one row of 6 uniforms per image.

    Train and test come from independent streams of SeedSequence((seed, split)),
    so they are disjoint draws; drawing an (n, 6) block row by row makes the
    first k images the same whatever n is.
    """
    if split not in SPLITS:
        raise DataError(f"shapes: unknown split '{split}'; use one of {', '.join(SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_CODE[split], _STREAM]))
    u = rng.random((n, 6))
    shape = np.minimum((u[:, 0] * len(SHAPES)).astype(np.int64), len(SHAPES) - 1)
    colour = np.minimum((u[:, 1] * len(PALETTE)).astype(np.int64), len(PALETTE) - 1)
    size = SIZE_RANGE[0] + u[:, 2] * (SIZE_RANGE[1] - SIZE_RANGE[0])
    x = POS_RANGE[0] + u[:, 3] * (POS_RANGE[1] - POS_RANGE[0])
    y = POS_RANGE[0] + u[:, 4] * (POS_RANGE[1] - POS_RANGE[0])
    rot = ROT_RANGE[0] + u[:, 5] * (ROT_RANGE[1] - ROT_RANGE[0])
    warm = np.isin(colour, [COLOUR_NAMES.index(c) for c in WARM])
    return pd.DataFrame(
        {
            "shape": shape,
            "shape_name": np.array(SHAPES)[shape],
            "colour": colour,
            "colour_name": np.array(COLOUR_NAMES)[colour],
            "size": size,
            "x": x,
            "y": y,
            "rotation": rot,
            "is_circle": (shape == 0).astype(np.int64),
            "is_large": (size > 0.5 * (SIZE_RANGE[0] + SIZE_RANGE[1])).astype(np.int64),
            "is_left": (x < 0.5).astype(np.int64),
            "is_top": (y < 0.5).astype(np.int64),
            "is_warm": warm.astype(np.int64),
        }
    )


def render(factors: pd.DataFrame, size: int) -> np.ndarray:
    """uint8 (N, 3, size, size): each sprite's colour times its pixel coverage."""
    n = len(factors)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    centres = np.arange(size, dtype=np.float32) + 0.5
    shape = factors["shape"].to_numpy()
    colour = factors["colour"].to_numpy()
    cx = (factors["x"].to_numpy() * size).astype(np.float32)
    cy = (factors["y"].to_numpy() * size).astype(np.float32)
    radius = (factors["size"].to_numpy() * size).astype(np.float32)
    theta = np.deg2rad(factors["rotation"].to_numpy()).astype(np.float32)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        sdf = np.empty((sl.stop - start, size, size), dtype=np.float32)
        for k in range(len(SHAPES)):
            m = np.nonzero(shape[sl] == k)[0]
            if m.size == 0:
                continue
            i = m + start
            # Pixel centres in each sprite's own frame (rotated by -theta).
            dx = centres[None, None, :] - cx[i, None, None]
            dy = centres[None, :, None] - cy[i, None, None]
            c, s = np.cos(theta[i])[:, None, None], np.sin(theta[i])[:, None, None]
            u, v = c * dx + s * dy, c * dy - s * dx
            sdf[m] = _SDF[k](u, v, radius[i, None, None])
        # Signed distance in pixels -> area coverage of a 1-px box filter:
        # a cheap, good antialias for edges straighter than a pixel.
        cov = np.clip(0.5 - sdf, 0.0, 1.0)
        rgb = cov[:, None] * COLOURS[colour[sl], :, None, None]
        np.rint(rgb, out=rgb)
        out[sl] = rgb.astype(np.uint8)
    return out


# Signed distance functions (negative inside), after Inigo Quilez's 2D SDFs.
# `r` is the circumradius; u right, v down (image convention).


def _sdf_circle(u, v, r):
    return np.sqrt(u * u + v * v) - r


def _sdf_box(u, v, bx, by):
    qx, qy = np.abs(u) - bx, np.abs(v) - by
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sdf_square(u, v, r):
    half = r / np.sqrt(2.0, dtype=np.float32)
    return _sdf_box(u, v, half, half)


def _sdf_triangle(u, v, r):
    # Equilateral, pointing up at rotation 0, centroid at the origin.
    k = np.float32(np.sqrt(3.0))
    half_side = r * k / 2
    px = np.abs(u) - half_side
    py = -v + half_side / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * half_side, 0)
    return -np.sqrt(px * px + py * py) * np.sign(py)


def _sdf_cross(u, v, r):
    arm = r / np.sqrt(1 + CROSS_WIDTH**2, dtype=np.float32)  # arm corner on the circumcircle
    w = arm * CROSS_WIDTH
    # min() of the two bars is exact outside and close enough inside for coverage.
    return np.minimum(_sdf_box(u, v, arm, w), _sdf_box(u, v, w, arm))


_SDF = (_sdf_circle, _sdf_square, _sdf_triangle, _sdf_cross)
