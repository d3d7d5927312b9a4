"""`celeba`: aligned CelebA (img_align_celeba, 178x218) with its 40 attributes.

Two crops are in use and their FIDs are not comparable (PROTOCOL, "CelebA-64
crop"), so the crop is an explicit option and is recorded in meta["crop"]:
- "d2c" (default): the Diff-AE / D2C crop, a 128x128 box centred at
  (x=89, y=121), i.e. rows 57:185 and columns 25:153, then resized;
- "squash": the whole 178x218 image resized to a square (DMZ's convention).
The images stay on disk (200k JPEGs) and are decoded on demand.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError
from ._common import candidate_roots, check_image_size, check_options, looked_in, parallel_map, pil_to_chw
from .base import ImageDataset

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
ALIGNED_SIZE = (178, 218)  # (width, height) of every aligned image
D2C_BOX = (25, 57, 25 + 128, 57 + 128)  # PIL (left, top, right, bottom): centre (89, 121)
CROPS = ("d2c", "squash")
PARTITIONS = {"train": 0, "test": 2}  # 1 is the validation partition, unused


def load(
    split: str = "train",
    *,
    root=None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    check_options("celeba", options, ("crop",))
    crop = options.get("crop", "d2c")
    if crop not in CROPS:
        raise DataError(f"celeba: unknown crop '{crop}'; use 'd2c' (Diff-AE/D2C 128px centre box) or 'squash' (DMZ)")
    size = check_image_size(64 if image_size is None else image_size)
    base, image_dir = find_folder(root)

    attrs = read_attributes(base / ATTR_FILE)
    part = read_partition(base / PARTITION_FILE)
    missing = ~attrs["filename"].isin(part.index)
    if missing.any():
        raise DataError(
            f"{base / PARTITION_FILE} has no partition for {int(missing.sum())} image(s) of {ATTR_FILE} "
            f"(first: {attrs['filename'][missing].iloc[0]}); use the two files of the same release"
        )
    attrs = attrs[part.loc[attrs["filename"]].to_numpy() == PARTITIONS[split]].reset_index(drop=True)
    if limit is not None:
        attrs = attrs.iloc[: int(limit)].reset_index(drop=True)

    # One directory listing instead of 200k stat calls.
    present = {e.name for e in os.scandir(image_dir)}
    absent = ~attrs["filename"].isin(present)
    if absent.any():
        raise DataError(
            f"{int(absent.sum())} CelebA {split} image(s) missing from {image_dir} "
            f"(first: {attrs['filename'][absent].iloc[0]}); unpack the full img_align_celeba archive there"
        )
    paths = [image_dir / f for f in attrs["filename"]]

    def load_one(path: Path) -> np.ndarray:
        return pil_to_chw(crop_image(_open_rgb(path), crop, size, path))

    def load_uint8(idx: np.ndarray) -> np.ndarray:
        chunks = parallel_map(load_one, [paths[i] for i in np.asarray(idx).reshape(-1)])
        return np.stack(chunks) if chunks else np.empty((0, 3, size, size), np.uint8)

    names = tuple(c for c in attrs.columns if c != "filename")
    return ImageDataset(
        name="celeba",
        split=split,
        attributes=attrs,
        image_shape=(3, size, size),
        load_uint8=load_uint8,
        files=tuple(paths),
        binary_attributes=names,
        class_column=None,
        source=str(base),
        meta={"image_size": size, "crop": crop},
    )


def crop_image(img: Image.Image, crop: str, size: int, path: Path | str = "") -> Image.Image:
    """Apply the named crop to an aligned 178x218 image and resize (PIL bilinear)."""
    if img.size != ALIGNED_SIZE:
        raise DataError(f"{path}: expected an aligned 178x218 CelebA image, found {img.size[0]}x{img.size[1]}; use img_align_celeba")
    if crop == "d2c":
        img = img.crop(D2C_BOX)
    return img.resize((size, size), Image.BILINEAR)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path} ({type(e).__name__}); replace the file") from e


def find_folder(root=None) -> tuple[Path, Path]:
    """(folder with the txt files, folder with the jpgs).

    Accepts the official layout and torchvision's (root/celeba/...), and the
    doubled image folder of the Kaggle archive (img_align_celeba/img_align_celeba).
    """
    tried = []
    for r in candidate_roots("celeba", root):
        for base in (r, r / "celeba"):
            tried.append(base)
            if not (base / ATTR_FILE).is_file() and not (base / IMAGE_DIR).is_dir():
                continue
            need = [n for n in (ATTR_FILE, PARTITION_FILE) if not (base / n).is_file()]
            image_dir = base / IMAGE_DIR
            if (image_dir / IMAGE_DIR).is_dir():
                image_dir = image_dir / IMAGE_DIR
            if not image_dir.is_dir():
                need.append(IMAGE_DIR + "/")
            if need:
                raise DataError(f"CelebA folder {base} lacks {', '.join(need)}; add them from the aligned CelebA release")
            return base, image_dir
    raise DataError(
        f"CelebA not found; looked in {looked_in(tried)}; put img_align_celeba/, {ATTR_FILE} and {PARTITION_FILE} "
        "in one of them, set DIFFAE_BENCH_DATA to a folder holding celeba/, or pass root=..."
    )


def read_attributes(path: Path) -> pd.DataFrame:
    """filename + 40 attribute columns as 0/1 (the file stores -1/1).

    Format: line 1 the image count, line 2 the attribute names, then one
    whitespace-separated row per image.
    """
    try:
        with open(path) as f:
            count = int(f.readline().split()[0])
            names = f.readline().split()
        table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, dtype={0: str})
    except (OSError, ValueError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot parse {path} ({type(e).__name__}); it should start with a count line and a names line") from e
    if table.shape[1] != len(names) + 1:
        raise DataError(f"{path}: rows have {table.shape[1] - 1} values but the header names {len(names)} attributes; replace the file")
    if len(table) != count:
        raise DataError(f"{path}: header says {count} images but {len(table)} rows follow; the file is truncated, replace it")
    values = table.iloc[:, 1:].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise DataError(f"{path}: attribute values must be -1 or 1; replace the file")
    out = pd.DataFrame((values > 0).astype(np.int64), columns=names)
    out.insert(0, "filename", table[0].astype(str).to_numpy())
    return out


def read_partition(path: Path) -> pd.Series:
    """filename -> partition (0 train, 1 validation, 2 test)."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=["filename", "partition"], dtype={"filename": str})
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot parse {path} ({type(e).__name__}); expected lines 'filename partition'") from e
    if table["partition"].isna().any() or not table["partition"].isin((0, 1, 2)).all():
        raise DataError(f"{path}: partitions must be 0, 1 or 2; replace the file")
    return table.set_index("filename")["partition"]
