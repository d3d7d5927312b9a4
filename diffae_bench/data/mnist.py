"""`mnist`: the four official IDX files, gzip-compressed or raw.

Parsed here rather than through torchvision so that the .gz files of the
official release load as they are, and so that a damaged file is reported by
name instead of surfacing as a reshape error deep inside another library.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ._common import candidate_roots, check_image_size, check_options, looked_in, resize_uint8
from .base import ImageDataset

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one MNIST uses
HOW_TO_GET = (
    "put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in one of those folders, "
    "set DIFFAE_BENCH_DATA to a folder holding mnist/, pass --data-root DIR, or let torchvision fetch it: "
    "--dataset-args download=true (Python: download=True)"
)


def load(
    split: str = "train",
    *,
    root=None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    check_options("mnist", options, ("download",))
    size = check_image_size(32 if image_size is None else image_size)
    img_file, lbl_file = find_files(split, root, download=bool(options.get("download", False)))
    images = read_idx(img_file, ndim=3)
    labels = read_idx(lbl_file, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{img_file}: expected 28x28 MNIST images, found {images.shape[1]}x{images.shape[2]}; replace the file")
    if len(images) != len(labels):
        raise DataError(
            f"{img_file} holds {len(images)} images but {lbl_file} holds {len(labels)} labels; "
            "the pair must come from the same release"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{lbl_file}: labels must be digits 0-9, found {int(labels.max())}; replace the file")
    if limit is not None:
        images, labels = images[: int(limit)], labels[: int(limit)]

    images = images[:, None]  # (N, 1, 28, 28)
    if size == 32:
        # The usual 32-px MNIST: the 28x28 digit framed by 2 black pixels, no
        # interpolation (the digit stays pixel-exact).
        images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
        resize = "pad"
    elif size == 28:
        resize = "none"
    else:
        images = resize_uint8(images, size)
        resize = "bilinear"
    labels = labels.astype(np.int64)
    attrs = pd.DataFrame({"digit": labels, **{f"digit_{d}": (labels == d).astype(np.int64) for d in range(10)}})
    return ImageDataset(
        name="mnist",
        split=split,
        attributes=attrs,
        image_shape=(1, size, size),
        images=np.ascontiguousarray(images),
        binary_attributes=tuple(f"digit_{d}" for d in range(10)),
        class_column="digit",
        source=str(img_file.parent),
        meta={"image_size": size, "resize": resize},
    )


def _search_dirs(root) -> list[Path]:
    dirs = []
    for r in candidate_roots("mnist", root):
        dirs += [r, r / "MNIST" / "raw"]  # our layout, torchvision's layout
    return dirs


def _find_in(d: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):  # raw first: no decompression needed
        if (d / name).is_file():
            return d / name
    return None


def find_files(split: str, root=None, download: bool = False) -> tuple[Path, Path]:
    """(images, labels) paths for a split: the first folder holding both."""
    img_stem, lbl_stem = FILES[split]
    dirs = _search_dirs(root)
    for d in dirs:
        img, lbl = _find_in(d, img_stem), _find_in(d, lbl_stem)
        if img and lbl:
            return img, lbl
    if download:
        return _download(split, root)
    raise DataError(f"MNIST {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found; looked in {looked_in(dirs)}; {HOW_TO_GET}")


def _download(split: str, root) -> tuple[Path, Path]:
    # Only on explicit request: the benchmark must never fetch data silently.
    target = candidate_roots("mnist", root)[0]
    try:
        import torchvision

        torchvision.datasets.MNIST(str(target), train=(split == "train"), download=True)
    except Exception as e:  # network, permissions, mirrors down...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"MNIST download into {target} failed ({msg}); fetch the IDX files by hand and pass root=...") from e
    d = target / "MNIST" / "raw"
    img, lbl = _find_in(d, FILES[split][0]), _find_in(d, FILES[split][1])
    if not (img and lbl):
        raise DataError(f"MNIST download finished but {d} lacks the {split} files; fetch them by hand and pass root=...")
    return img, lbl


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (optionally .gz) into an array.

    Layout: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number
    of dimensions, that many big-endian uint32 sizes, then the data.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises all three for damage
        raise DataError(f"cannot read {path}: {e}; the file is corrupt or truncated, replace it") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number); replace it")
    if raw[2] != _UBYTE:
        raise DataError(f"{path}: IDX type 0x{raw[2]:02x} is not unsigned bytes (0x08); replace it")
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise DataError(f"{path}: expected a {ndim}-dimensional IDX file, found {nd} dimensions; check the file name")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header; replace it")
    dims = struct.unpack(f">{nd}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{path} is {what} ({len(raw)} bytes, header implies {expected}); replace it")
    # A writable copy: callers may edit pixels (frombuffer views are read-only).
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()
