"""The data-set contract every loader fulfils.

A data set is a fixed, ordered collection of images for one split plus a table
of labels/attributes with one row per image. Images come out as float32
tensors in [-1, 1], shape (N, C, H, W), which is the range every model and
metric in the suite assumes (PROTOCOL: "x in [-1, 1]").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

SPLITS = ("train", "test")


@dataclass
class ImageDataset:
    """Images of one split held as uint8 (N, C, H, W) plus a label table.

    Loaders that cannot hold everything in memory pass `load_uint8`, a function
    from an index array to a uint8 (n, C, H, W) array, instead of `images`.
    """

    name: str  # registry name, e.g. "shapes"
    split: str  # "train" or "test"
    attributes: pd.DataFrame  # one row per image; binary attrs as 0/1 ints
    image_shape: tuple[int, int, int]  # (C, H, W)
    images: np.ndarray | None = None  # uint8 (N, C, H, W), or None if lazy
    load_uint8: Callable[[np.ndarray], np.ndarray] | None = None
    binary_attributes: tuple[str, ...] = ()  # columns usable as 2-class labels
    class_column: str | None = None  # multi-class label column, if any (e.g. "digit")
    # Columns holding the generative factors that drew each image (shapes, dSprites), for
    # disentanglement measures; () where the data has no known generative factors (MNIST's digit
    # is a label, not a full set of factors).
    factors: tuple[str, ...] = ()
    source: str = ""  # where the data came from (path or "procedural")
    meta: dict = field(default_factory=dict)  # loader options that shape the data
    files: tuple | None = None  # lazy data sets: the image files (their size and mtime key the hash cache)
    _hash: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.attributes)

    def uint8(self, idx: np.ndarray | slice | None = None) -> np.ndarray:
        """uint8 images (n, C, H, W) for the given indices (all if None)."""
        if self.images is not None:
            return self.images if idx is None else self.images[idx]
        assert self.load_uint8 is not None
        if idx is None:
            idx = np.arange(len(self))
        elif isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        return self.load_uint8(np.asarray(idx))

    def tensor(self, idx: np.ndarray | slice | None = None) -> torch.Tensor:
        """float32 images in [-1, 1], shape (n, C, H, W)."""
        return uint8_to_unit(self.uint8(idx))

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[torch.Tensor]:
        """The split in order, in batches (for evaluation; training samples)."""
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield self.tensor(np.arange(start, min(start + batch_size, n)))

    def content_hash(self) -> str:
        """sha256 over the image bytes and the attribute table.

        Keys caches and records: two data sets with the same hash hold the
        same pixels and labels in the same order, whatever their names.
        """
        if self._hash is None and self.images is None and self.files is not None:
            self._hash = _cached_file_hash(self)
        if self._hash is None:
            h = hashlib.sha256()
            h.update(repr((self.name, self.split, self.image_shape, len(self))).encode())
            for start in range(0, len(self), 4096):
                h.update(np.ascontiguousarray(self.uint8(np.arange(start, min(start + 4096, len(self))))).tobytes())
            h.update(self.attributes.to_csv(index=False).encode())
            self._hash = h.hexdigest()
        return self._hash


def uint8_to_unit(x: np.ndarray) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(127.5).sub_(1.0)


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _cached_file_hash(ds: ImageDataset) -> str:
    """A lazy data set's content hash, computed once per file list: decoding 200k JPEGs at every start
    is minutes. The cache entry is keyed by every file's path, size and mtime (and the loader's
    options and labels), so a changed, added or removed file recomputes it."""
    import json
    import os

    from ..paths import hash_cache_dir

    key = hashlib.sha256()
    key.update(json.dumps([ds.name, ds.split, list(ds.image_shape), len(ds), ds.meta], sort_keys=True,
                          default=str).encode())
    key.update(ds.attributes.to_csv(index=False).encode())
    for f in ds.files[:len(ds)]:
        st = os.stat(f)
        key.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    entry = hash_cache_dir() / key.hexdigest()
    if entry.is_file():
        return entry.read_text().strip()
    files, ds.files = ds.files, None  # compute by decoding, once
    try:
        value = ds.content_hash()
    finally:
        ds.files = files
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    tmp.write_text(value + "\n")
    os.replace(tmp, entry)
    return value
