"""`dsprites`: DeepMind's dSprites (64x64 binary sprites, 5 ground-truth factors).

Reads the npz files described in shared/data/README.md with
allow_pickle=False and only the array keys: the `metadata` entry is a pickle,
and unpickling data is code execution.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ._common import candidate_roots, check_image_size, check_options, looked_in, resize_uint8
from .base import ImageDataset

VARIANTS = {"downsampled": "dsprites_downsampled.npz", "subset": "dsprites_subset.npz"}
SHAPE_NAMES = ("square", "ellipse", "heart")
FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")  # column order of latents_*
# The split permutation's seed is fixed, not the `seed` argument: a model
# trained with one seed must be tested on images it never saw under any other.
SPLIT_SEED = 20_240_601
TEST_FRACTION = 0.1
BINARY = ("is_square", "is_ellipse", "is_heart", "is_large", "is_left", "is_top")
_POOL_LUT = np.rint(np.arange(5) * 255 / 4).astype(np.uint8)  # 0..4 lit pixels of a 2x2 block -> uint8


def load(
    split: str = "train",
    *,
    root=None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    check_options("dsprites", options, ("variant",))
    variant = options.get("variant", "downsampled")
    if variant not in VARIANTS:
        raise DataError(f"dsprites: unknown variant '{variant}'; use one of {', '.join(VARIANTS)}")
    size = check_image_size(64 if image_size is None else image_size)
    path = find_file(VARIANTS[variant], root)
    imgs, classes, values, orig = read_npz(path)

    idx = split_indices(len(imgs), split)
    if limit is not None:
        idx = idx[: int(limit)]
    images = imgs[idx][:, None]
    if size == 64:
        images = images * np.uint8(255)  # {0,1} -> {0,255}
        resize = "none"
    elif size == 32:
        # 2x2 average pooling: exact area mean, no interpolation kernel.
        counts = images[..., ::2, ::2] + images[..., 1::2, ::2] + images[..., ::2, 1::2] + images[..., 1::2, 1::2]
        images = _POOL_LUT[counts]
        resize = "avgpool2"
    else:
        images = resize_uint8(images * np.uint8(255), size)
        resize = "bilinear"

    c, v = classes[idx], values[idx]
    attrs = pd.DataFrame({"index": idx, "original_index": orig[idx]})
    for k, name in enumerate(FACTORS):
        attrs[name] = c[:, k]
        attrs[f"{name}_value"] = v[:, k]
    attrs.insert(3, "shape_name", np.array(SHAPE_NAMES)[c[:, 0]])
    for k, name in enumerate(SHAPE_NAMES):
        attrs[f"is_{name}"] = (c[:, 0] == k).astype(np.int64)
    attrs["is_large"] = (c[:, 1] >= 3).astype(np.int64)  # scale classes 3-5 of 0-5
    # posX runs left -> right and posY top -> bottom in the images (checked).
    attrs["is_left"] = (v[:, 3] < 0.5).astype(np.int64)
    attrs["is_top"] = (v[:, 4] < 0.5).astype(np.int64)
    return ImageDataset(
        name="dsprites",
        split=split,
        attributes=attrs,
        image_shape=(1, size, size),
        images=np.ascontiguousarray(images),
        binary_attributes=BINARY,
        class_column="shape",
        factors=FACTORS,  # the class indices (latents_classes), as disentanglement_lib uses them
        source=str(path),
        meta={"image_size": size, "variant": variant, "resize": resize, "split_seed": SPLIT_SEED},
    )


def split_indices(n: int, split: str) -> np.ndarray:
    """Rows of the npz file in a split, in a fixed shuffled order.

    Shuffled so that the first k images (limit=k) are a fair sample, not one
    corner of the factor grid; 10% (rounded down) go to test.
    """
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(n * TEST_FRACTION)
    return perm[:n_test] if split == "test" else perm[n_test:]


def find_file(filename: str, root=None) -> Path:
    if root is not None and Path(root).is_file():  # a path straight to the npz
        return Path(root)
    dirs = candidate_roots("dsprites", root)
    for d in dirs:
        if (d / filename).is_file():
            return d / filename
    raise DataError(
        f"dSprites file {filename} not found; looked in {looked_in(dirs)}; put it in one of those folders, "
        "set DIFFAE_BENCH_DATA to a folder holding dsprites/, or pass root=..."
    )


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(imgs, latents_classes, latents_values, original indices), validated."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("imgs", "latents_classes", "latents_values") if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; it is not a dSprites npz, replace it")
            imgs = z["imgs"]
            classes = z["latents_classes"].astype(np.int64)
            values = z["latents_values"].astype(np.float64)
            orig = z["original_dataset_indices"].astype(np.int64) if "original_dataset_indices" in z.files else np.arange(len(imgs))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {path} ({msg}); the file is corrupt or truncated, replace it") from e
    n = len(imgs)
    if imgs.ndim != 3 or imgs.shape[1:] != (64, 64) or imgs.dtype != np.uint8:
        raise DataError(f"{path}: imgs must be uint8 (N, 64, 64), found {imgs.dtype} {imgs.shape}; replace the file")
    if classes.shape != (n, 5) or values.shape != (n, 5) or orig.shape != (n,):
        raise DataError(f"{path}: latents arrays do not match {n} images of 5 factors; replace the file")
    if n and imgs.max() > 1:
        raise DataError(f"{path}: imgs must be binary {{0,1}}, found values up to {int(imgs.max())}; replace the file")
    if n and (classes[:, 0].min() < 0 or classes[:, 0].max() >= len(SHAPE_NAMES)):
        raise DataError(f"{path}: shape classes outside 0-2; replace the file")
    return imgs, classes, values, orig
