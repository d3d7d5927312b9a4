"""Content-keyed on-disk cache for what several tasks need from one model and data set.

z_sem of a split, x_T inverted with T steps, reconstructions, feature-network
activations: each entry is keyed by a sha256 of everything its value depends
on (model fingerprint = checkpoint sha256 or a hash of the weights, data-set
content hash, split, number of images, T, seed, numeric mode, and the cache
format version), never by a bare name, so a changed checkpoint or data set
can never be served a stale value. Entries are safetensors files written
atomically; the key's parts are stored in the header for inspection.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import atomic_write_bytes

CACHE_VERSION = 2  # bump when what an entry holds changes meaning (2: codes keep the model's order)
ENV_VAR = "DIFFAE_BENCH_CACHE"


def default_cache_dir() -> Path:
    """$DIFFAE_BENCH_CACHE, else $XDG_CACHE_HOME/diffae_bench, else ~/.cache/diffae_bench."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffae_bench"


class Cache:
    """get_or_compute(kind, parts, fn): fn() -> dict of tensors, stored under a key of parts."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, parts: dict) -> str:
        blob = json.dumps({"kind": kind, "cache_version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, kind: str, parts: dict) -> Path:
        k = self.key(kind, parts)
        return self.root / kind / k[:2] / f"{k}.safetensors"

    def get_or_compute(self, kind: str, parts: dict, fn: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not self.enabled:
            self.misses += 1
            return fn()
        p = self.path(kind, parts)
        if p.is_file():
            try:
                out = load_file(str(p))
                self.hits += 1
                return out
            except Exception:  # a damaged entry is recomputed, never trusted
                p.unlink(missing_ok=True)
        out = fn()
        self.misses += 1
        tensors = {k: v.detach().contiguous().cpu() for k, v in out.items()}
        header = {"parts": json.dumps({"kind": kind, **parts}, sort_keys=True, default=str)}
        atomic_write_bytes(p, lambda tmp: save_file(tensors, tmp, metadata=header))
        return out
