"""Content-keyed on-disk cache for what several tasks need from one model and data set.

z_sem of a split, x_T inverted with T steps, reconstructions, feature-network
activations: each entry is keyed by a sha256 of everything its value depends
on, never by a bare name, so no stale value can be served:
- what the caller names: model fingerprint (checkpoint sha256 or a hash of
  the weights) and the model's code (context.model_code_hash), data-set
  content hash, split, number of images, T, seed, numeric mode;
- what every entry depends on (`environment_identity`, added to every key):
  the code that computed it (a sha256 of every source file of the suite:
  models, sampler, networks, data, tasks; coarser than a per-entry dependency
  list, and so never wrong when an import is added), the library versions
  that change numbers (torch, numpy, scipy, scikit-learn, torch-fidelity,
  lpips), the CPU kernel family, oneMKL's code path (numerics.mkl_branch: it
  dispatches by CPU vendor), numpy's BLAS kernels (numerics.blas_kernels:
  OpenBLAS picks them by CPU model; records name both), torch's CPU thread count
  (numerics.cpu_threads: the split of a batch over threads can change the bits), and the presence and sha256 of every
  pretrained weight file the suite may load;
- the cache format version.
Entries are safetensors files written atomically; the key's parts are stored
in the header for inspection.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from .. import distributed as dist
from ..checkpoint import atomic_write_bytes
from ..paths import default_cache_dir

CACHE_VERSION = 3  # bump when what an entry holds changes meaning (2: codes keep the model's order; 3: identity)
ENV_VAR = "DIFFAE_BENCH_CACHE"  # the cache folder (data/_common.default_cache_dir)
SOURCE_DIRS = ("diffae_bench", "tasks", "baselines")  # the suite's code, as laid out in the repository
NUMERIC_LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "torch-fidelity", "lpips")


@lru_cache(maxsize=4)
def source_hash(root: Path | None = None) -> str:
    """sha256 over the suite's Python sources under root (default: this checkout), paths and contents, in a fixed order."""
    if root is None:
        import diffae_bench

        root = Path(diffae_bench.__file__).resolve().parent.parent
    h = hashlib.sha256()
    for d in SOURCE_DIRS:
        base = root / d
        if not base.is_dir():  # installed layouts may map tasks/ elsewhere; hash what exists
            continue
        for p in sorted(base.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def weights_identity() -> dict[str, str | None]:
    """sha256 of each pretrained weight file the run may load (None where absent); hashed once per file version.

    The file is the one this run would load (diffae_bench.metrics.weights.where: an
    explicit --lpips-weights / --inception-weights path, or torch.hub's cache).
    """
    from ..metrics import weights as W

    out = {}
    for name, w in W.KNOWN.items():
        p = W.where(name)
        out[w.file] = W.cached_sha256(p) if p.is_file() else None
    return out


def environment_identity() -> dict:
    """What every cached value depends on besides its own key: code, libraries, CPU, MKL and BLAS kernels, threads, weights.

    The same factors as the numerics fingerprint a record carries, so a value computed with other
    kernels is never served under this run's fingerprint.
    """
    from ..numerics import blas_kernels, cpu_capability, cpu_threads, mkl_branch
    from ..provenance import library_versions

    versions = library_versions()
    return {"source": source_hash(), "libraries": {k: versions.get(k) for k in NUMERIC_LIBRARIES},
            "cpu_capability": cpu_capability(), "mkl": mkl_branch(), "blas": blas_kernels(), "threads": cpu_threads(),
            "weights": weights_identity()}


class Cache:
    """get_or_compute(kind, parts, fn): fn() -> dict of tensors, stored under a key of parts."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, parts: dict) -> str:
        blob = json.dumps({"kind": kind, "cache_version": CACHE_VERSION, "environment": environment_identity(), **parts},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, kind: str, parts: dict) -> Path:
        k = self.key(kind, parts)
        return self.root / kind / k[:2] / f"{k}.safetensors"

    def get_or_compute(self, kind: str, parts: dict, fn: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        out = self.get(kind, parts)
        if out is not None:
            return out
        out = fn()
        self.put(kind, parts, out)
        return out

    def get(self, kind: str, parts: dict) -> dict[str, torch.Tensor] | None:
        """The stored entry, or None (counted as a miss: the caller computes and `put`s it)."""
        if not self.enabled:
            self.misses += 1
            return None
        p = self.path(kind, parts)
        # Under torchrun every rank takes rank 0's decision (a computation may hold collectives that
        # every rank must join); rank 0 alone writes, and the others wait for the entry.
        out = self._load(p) if dist.is_main() else None
        if dist.agree(out is not None):
            out = out if out is not None else self._load(p)
            if out is not None:
                self.hits += 1
                return out
        self.misses += 1
        return None

    def put(self, kind: str, parts: dict, out: dict[str, torch.Tensor]) -> None:
        if not self.enabled:
            return
        if dist.is_main():
            tensors = {k: v.detach().contiguous().cpu() for k, v in out.items()}
            header = {"parts": json.dumps({"kind": kind, **parts}, sort_keys=True, default=str)}
            atomic_write_bytes(self.path(kind, parts), lambda tmp: save_file(tensors, tmp, metadata=header))
        dist.barrier()

    @staticmethod
    def _load(p: Path) -> dict[str, torch.Tensor] | None:
        if not p.is_file():
            return None
        try:
            return load_file(str(p))
        except Exception:  # a damaged entry is recomputed, never trusted
            p.unlink(missing_ok=True)
            return None
