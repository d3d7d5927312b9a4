"""Data sets by name: `load_dataset("shapes")`, `load_dataset("mnist", "test")`.

Every loader has the signature
    loader(split, *, root, image_size, seed, limit, **options) -> ImageDataset
and rejects options it does not know. `shapes` is the default: it is drawn
procedurally and needs no files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError
from ..registry import Registry
from ._common import candidate_roots, default_root, take_first
from .base import SPLITS, ImageDataset, uint8_to_unit, unit_to_uint8

DEFAULT_DATASET = "shapes"

# Built-ins are listed like plugins (diffae_bench.registry): a loader's module is
# imported when its data set is first asked for; other packages add data sets
# through the "diffae_bench.datasets" entry-point group (each loads a loader function).
DATASETS: Registry[Callable[..., ImageDataset]] = Registry("data set", group="diffae_bench.datasets", builtins={
    name: f"diffae_bench.data.{name}:load" for name in ("shapes", "mnist", "dsprites", "celeba", "imagefolder")})


def load_dataset(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options,
) -> ImageDataset:
    """Load one split of a registered data set.

    root: folder of the data (default: see `default_root`); image_size: side in
    pixels (each data set has its own default); seed: only for generated data;
    limit: keep the first `limit` images of the split; options: loader-specific.
    """
    loader = DATASETS.get(name)  # raises with close matches for a typo
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' for data set '{name}'; use one of {', '.join(SPLITS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    ds = loader(split, root=root, image_size=image_size, seed=seed, limit=limit, **options)
    # Loaders may already have stopped at `limit`; this makes it hold for all.
    return take_first(ds, limit)


__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "ImageDataset",
    "SPLITS",
    "candidate_roots",
    "default_root",
    "load_dataset",
    "uint8_to_unit",
    "unit_to_uint8",
]
