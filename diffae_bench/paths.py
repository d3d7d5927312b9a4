"""Where the suite keeps files between runs (one definition for the cache and the data sets' hash cache)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$DIFFAE_BENCH_CACHE, else $XDG_CACHE_HOME/diffae_bench, else ~/.cache/diffae_bench."""
    if os.environ.get("DIFFAE_BENCH_CACHE"):
        return Path(os.environ["DIFFAE_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffae_bench"


def hash_cache_dir() -> Path:
    """Where lazy data sets' content hashes are kept (data/base.py: _cached_file_hash)."""
    return default_cache_dir() / "content_hash"
