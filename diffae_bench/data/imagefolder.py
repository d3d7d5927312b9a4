"""`imagefolder`: any folder of images, with optional labels from a CSV.

Images are found recursively and ordered by relative path, so the order (and
the content hash) does not depend on the file system. Labels come from a CSV
with a `filename` column (paths relative to the folder); integer 0/1 columns
become binary attributes. Without a `split` column in the CSV, the split is a
fixed 90/10 function of each file's relative path, so adding files never moves
an existing image between train and test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import DataError
from ._common import candidate_roots, check_image_size, check_options, looked_in, parallel_map, pil_to_chw
from .base import SPLITS, ImageDataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_LABELS = "labels.csv"
TEST_PERCENT = 10
CLASS_COLUMNS = ("label", "class")  # used as class_column when present


def load(
    split: str = "train",
    *,
    root=None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    check_options("imagefolder", options, ("labels", "channels", "class_column"))
    size = check_image_size(64 if image_size is None else image_size)
    channels = options.get("channels", 3)
    if channels not in (1, 3):
        raise DataError(f"imagefolder: channels must be 1 or 3, got {channels!r}")
    folder = _find_folder(root)
    files = list_images(folder)

    labels_path = options.get("labels")
    if labels_path is None and (folder / DEFAULT_LABELS).is_file():
        labels_path = folder / DEFAULT_LABELS
    if labels_path is not None:
        table = read_labels(Path(labels_path), folder, files)
    else:
        table = pd.DataFrame({"filename": files})
    skipped = len(files) - len(table)

    if "split" in table.columns:
        keep = table["split"].to_numpy() == split
    else:
        keep = np.array([hash_split(f) == split for f in table["filename"]], dtype=bool)
    attrs = table[keep].reset_index(drop=True)
    if limit is not None:
        attrs = attrs.iloc[: int(limit)].reset_index(drop=True)
    if len(attrs) == 0:
        raise DataError(f"imagefolder: no {split} images in {folder}; add images or set the CSV's split column")

    binary = tuple(
        c for c in attrs.columns
        if c not in ("filename", "split") and pd.api.types.is_integer_dtype(table[c]) and table[c].isin((0, 1)).all()
    )
    class_column = options.get("class_column") or next((c for c in CLASS_COLUMNS if c in attrs.columns), None)
    if class_column is not None and class_column not in attrs.columns:
        raise DataError(f"imagefolder: class_column '{class_column}' is not a column of {labels_path}")

    paths = [folder / f for f in attrs["filename"]]
    mode = "RGB" if channels == 3 else "L"

    def load_one(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                img = im.convert(mode)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {path} ({type(e).__name__}); replace or remove the file") from e
        return pil_to_chw(square_resize(img, size))

    def load_uint8(idx: np.ndarray) -> np.ndarray:
        chunks = parallel_map(load_one, [paths[i] for i in np.asarray(idx).reshape(-1)])
        return np.stack(chunks) if chunks else np.empty((0, channels, size, size), np.uint8)

    return ImageDataset(
        name="imagefolder",
        split=split,
        attributes=attrs,
        image_shape=(channels, size, size),
        load_uint8=load_uint8,
        files=tuple(paths),
        binary_attributes=binary,
        class_column=class_column,
        source=str(folder),
        meta={
            "image_size": size,
            "channels": channels,
            "labels": str(labels_path) if labels_path is not None else None,
            "split_by": "csv" if "split" in table.columns else "path-hash",
            "unlabelled_skipped": skipped,
        },
    )


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to the largest square, then PIL bilinear resize."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)


def hash_split(relpath: str) -> str:
    """'test' for ~10% of paths, 'train' for the rest; fixed per path."""
    h = int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


def list_images(folder: Path) -> list[str]:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no images ({'/'.join(e[1:] for e in EXTENSIONS)}) found under {folder}; point root= at a folder of images")
    return files


def read_labels(path: Path, folder: Path, files: list[str]) -> pd.DataFrame:
    """The CSV's rows for images that exist, in the images' (sorted) order.

    Images without a row are left out (meta['unlabelled_skipped'] counts them);
    a row naming a file that does not exist is an error.
    """
    if not path.is_absolute() and not path.is_file():
        path = folder / path  # a bare name means a CSV inside the folder
    try:
        table = pd.read_csv(path, dtype={"filename": str})
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot read labels CSV {path} ({type(e).__name__}); it must be a CSV with a 'filename' column") from e
    if "filename" not in table.columns:
        raise DataError(f"labels CSV {path} has no 'filename' column (columns: {', '.join(map(str, table.columns))}); add one with paths relative to {folder}")
    table["filename"] = [Path(f).as_posix() for f in table["filename"]]
    if table["filename"].duplicated().any():
        raise DataError(f"labels CSV {path} lists {table['filename'][table['filename'].duplicated()].iloc[0]} twice; keep one row per image")
    unknown = ~table["filename"].isin(set(files))
    if unknown.any():
        raise DataError(f"labels CSV {path} names {int(unknown.sum())} image(s) not found under {folder} (first: {table['filename'][unknown].iloc[0]}); fix the paths")
    if "split" in table.columns:
        table["split"] = table["split"].astype(str).str.strip().str.lower()
        bad = ~table["split"].isin(SPLITS + ("val", "valid", "validation"))
        if bad.any():
            raise DataError(f"labels CSV {path}: split values must be train, test or val, found '{table['split'][bad].iloc[0]}'")
    order = {f: i for i, f in enumerate(files)}
    table = table.iloc[np.argsort([order[f] for f in table["filename"]], kind="stable")]
    return table.reset_index(drop=True)


def _find_folder(root) -> Path:
    dirs = candidate_roots("imagefolder", root)
    for d in dirs:
        if d.is_dir():
            return d
    raise DataError(f"imagefolder needs a folder of images: pass root=FOLDER (looked in {looked_in(dirs)})")
