"""Whole-task results in the content-keyed cache, so a repeated `bench run` costs seconds.

The EvalContext caches what is expensive to compute from a model (codes, x_T,
decodings, samples, real-image features), but some tasks also fit something
each time (probes' logistic regressions, fake detection's CNN, few-shot
classifiers and their rejection-sampled decodings). A task's result is a pure
function of
  the task's code and version, its resolved config,
  the model's fingerprint (checkpoint sha256) and code, the data's content
  hashes, --limit, the seed, the numeric mode and the device type,
so it is cached under a key of exactly those, plus what every cache key holds
(cache.environment_identity: the sha256 of every source file of the suite, so
any code change, even one that forgot its version bump, recomputes rather than
serving a stale number; library versions; CPU kernels; pretrained weights).
The batch size is not in the key: results do not depend on it (per-item seeds,
diffae_bench.rng). Figures are stored with the result and written again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .task import MetricValue, TaskResult


def task_key(task_cls, cfg, ctx, device: torch.device) -> dict:
    return {"task": task_cls.name, "version": task_cls.version, "config": json.dumps(asdict(cfg), sort_keys=True, default=str),
            "model": ctx.model_key, "dataset": ctx.dataset_name,
            "data": {s: ctx.dataset(s).content_hash() for s in ("train", "test")}, "limit": ctx.limit,
            "seed": ctx.seed, "numeric_mode": ctx.numeric_mode, "device": device.type}


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
