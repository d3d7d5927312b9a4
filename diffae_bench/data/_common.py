"""Helpers shared by the loaders: where data lives, resizing, option checks.

Kept out of __init__ so that the loader modules can import them without a
circular import through the registry.
"""

from __future__ import annotations

import difflib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import ImageDataset

ENV_VAR = "DIFFAE_BENCH_DATA"

# The repository's sibling `shared/data` folder, found from this file rather
# than the cwd so that tests and scripts work wherever they are started.
_REPO_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def candidate_roots(name: str, root: str | Path | None = None) -> list[Path]:
    """Every folder `default_root` considers for `name`, in order.

    An explicit `root` is the only candidate: a mistyped path must fail loudly
    rather than silently fall back to some other copy of the data.
    """
    if root is not None:
        return [Path(os.path.abspath(Path(root).expanduser()))]
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env).expanduser() / name)
    out += [Path("data") / name, Path("..") / "shared" / "data" / name, _REPO_SHARED / name]
    # Deduplicate (the cwd may be the repository root) while keeping order.
    seen: set[Path] = set()
    uniq = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(Path(os.path.abspath(p)))  # absolute: messages and records must not depend on the cwd
    return uniq


def default_root(name: str, root: str | Path | None = None) -> Path | None:
    """The first existing folder for data set `name`, or None.

    Order: `root`; $DIFFAE_BENCH_DATA/<name>; ./data/<name>;
    ../shared/data/<name> (from the cwd); shared/data/<name> beside the repository.
    """
    for p in candidate_roots(name, root):
        if p.is_dir():
            return p
    return None


def looked_in(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def check_image_size(image_size: int, minimum: int = 1) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < minimum:
        raise DataError(f"image_size must be an integer >= {minimum}, got {image_size!r}; pass e.g. image_size=32")
    return int(image_size)


def check_options(name: str, options: dict, allowed: Sequence[str]) -> None:
    """Unknown loader options are errors (a typo must not be ignored)."""
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            known = ", ".join(allowed) or "none"
            raise DataError(f"data set '{name}' has no option '{key}'{hint} (its options: {known})")


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (N, C, h, w) images to (N, C, size, size) with PIL bilinear.

    PIL, not torch, so that results match the usual PIL-based pipelines (PIL's
    bilinear widens its filter when shrinking, i.e. it antialiases).
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(n):
        for ch in range(c):
            img = Image.fromarray(images[i, ch])
            out[i, ch] = np.asarray(img.resize((size, size), Image.BILINEAR))
    return out


def pil_to_chw(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def parallel_map(fn: Callable, items: Sequence, threads: int = 8) -> list:
    """map() over threads: JPEG/PNG decoding in PIL releases the GIL."""
    if len(items) < 32:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, os.cpu_count() or 1)) as ex:
        return list(ex.map(fn, items, chunksize=16))


def take_first(ds: ImageDataset, limit: int | None) -> ImageDataset:
    """The first `limit` images of `ds` (all of them if limit is None)."""
    if limit is None:
        return ds
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    limit = int(limit)
    if limit < len(ds):
        ds.attributes = ds.attributes.iloc[:limit].reset_index(drop=True)
        if ds.images is not None:
            ds.images = ds.images[:limit]
        # A lazy loader needs no change: indices 0..limit-1 mean the same images.
        ds._hash = None
    ds.meta = {**ds.meta, "limit": limit}
    return ds


def default_cache_dir() -> Path:
    """$DIFFAE_BENCH_CACHE, else $XDG_CACHE_HOME/diffae_bench, else ~/.cache/diffae_bench."""
    if os.environ.get("DIFFAE_BENCH_CACHE"):
        return Path(os.environ["DIFFAE_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffae_bench"


def hash_cache_dir() -> Path:
    """Where lazy data sets' content hashes are kept (base._cached_file_hash)."""
    return default_cache_dir() / "content_hash"
