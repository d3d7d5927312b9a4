"""Whole-task results in the content-keyed cache, so a repeated `bench run` costs seconds.

The EvalContext caches what is expensive to compute from a model (codes, x_T,
decodings, samples, real-image features), but some tasks also fit something
each time (probes' logistic regressions, fake detection's CNN, few-shot
classifiers and their rejection-sampled decodings). A task's result is a pure
function of
  the task's code and version, its resolved config,
  the model's fingerprint (checkpoint sha256), the data's content hashes,
  --limit, the seed, the numeric mode, the batch size and the device type,
so it is cached under a key of exactly those. "The task's code" is the sha256
of every source file of the suite (diffae_bench/, tasks/, baselines/): any code
change, even one that forgot its version bump, recomputes rather than serving
a stale number. Figures are stored with the result and written again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch

from .task import MetricValue, TaskResult

PACKAGE_DIRS = ("diffae_bench", "tasks", "baselines")


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 over the suite's Python sources (paths and contents), in a fixed order."""
    import diffae_bench

    root = Path(diffae_bench.__file__).resolve().parent.parent
    h = hashlib.sha256()
    for d in PACKAGE_DIRS:
        base = root / d
        if not base.is_dir():  # installed layouts may map tasks/ elsewhere; hash what exists
            continue
        for p in sorted(base.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def task_key(task_cls, cfg, ctx, device: torch.device) -> dict:
    return {"task": task_cls.name, "version": task_cls.version, "config": json.dumps(asdict(cfg), sort_keys=True, default=str),
            "model": ctx.fingerprint, "dataset": ctx.dataset_name,
            "data": {s: ctx.dataset(s).content_hash() for s in ("train", "test")}, "limit": ctx.limit,
            "seed": ctx.seed, "numeric_mode": ctx.numeric_mode, "batch_size": ctx.batch_size,
            "device": device.type, "source": source_hash()}


def _plain(o):
    """JSON for numpy scalars and arrays (their Python values), anything else as its string."""
    return o.tolist() if hasattr(o, "tolist") else str(o)


def _bytes(b: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(b), dtype=torch.uint8) if b else torch.zeros(0, dtype=torch.uint8)


def pack(result: TaskResult, used: dict, pretrained_weights: dict, out_dir: Path | None) -> dict[str, torch.Tensor]:
    """A task's outcome as tensors for the Cache: JSON of the result, plus each figure's bytes."""
    blob = {"values": [asdict(v) for v in result.values], "notes": result.notes, "figures": result.figures,
            "extra": result.extra, "used": used, "pretrained_weights": pretrained_weights}
    out = {"json": _bytes(json.dumps(blob, default=_plain).encode())}
    for i, name in enumerate(result.figures):
        path = Path(out_dir or ".") / name
        if path.is_file():
            out[f"figure{i}"] = _bytes(path.read_bytes())
    return out


def unpack(tensors: dict[str, torch.Tensor], out_dir: Path | None) -> tuple[TaskResult, dict, dict]:
    """(result, used, pretrained_weights) from pack()'s tensors; figures written into out_dir."""
    blob = json.loads(bytes(tensors["json"].numpy()).decode())
    result = TaskResult(values=[MetricValue(**v) for v in blob["values"]], notes=blob["notes"],
                        figures=blob["figures"], extra=blob["extra"])
    if out_dir is not None:
        for i, name in enumerate(result.figures):
            if f"figure{i}" in tensors:
                path = Path(out_dir) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes(tensors[f"figure{i}"].numpy()))
    return result, {s: int(n) for s, n in blob["used"].items()}, blob["pretrained_weights"]
