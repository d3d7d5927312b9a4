"""Result records: one JSON per (task, model, data set) run, with full provenance.

A record says what was measured (task name, version, resolved config), on
what (model fingerprint, checkpoint sha256 and config; data set name, content
hashes and image counts per split), how (seed, numeric mode, device, library
versions, git commit, pretrained weights' sha256) and what came out (metric
values with bootstrap CIs, notes on what is missing and why, figures). It is
written atomically, so a crashed run leaves no half-written record.

`record_rows` flattens a record to the long table (one row per metric value)
that leaderboards, `bench table` and `bench compare` are built from.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

from ..checkpoint import atomic_write_json
from ..errors import BenchError
from .task import RENAMED_OPTIONS

SCHEMA_VERSION = 1

ROW_COLUMNS = ("record_id", "created_at", "task", "task_version", "config_hash", "model", "model_kind", "model_fingerprint",
               "dataset", "data_hash", "metric", "family", "value", "ci_low", "ci_high", "n", "higher_is_better",
               "main", "ideal", "numeric_mode", "numerics", "weights", "seed", "git_commit")


def data_hash(dataset: dict) -> str:
    """One hash for the exact images a record was computed on (splits, counts, contents)."""
    blob = json.dumps({s: [d["content_hash"], d["n_used"]] for s, d in sorted(dataset["splits"].items())})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Options renamed without a change of meaning are hashed under their former
# names (task.RENAMED_OPTIONS), so a record keeps the config_hash and record_id it had.
HASHED_AS = {(task, new): old for (task, old), new in RENAMED_OPTIONS.items()}


def _hashed_task(task: dict) -> dict:
    """The record's task section with renamed options under the names they are hashed by."""
    config = {HASHED_AS.get((task["name"], k), k): v for k, v in task["config"].items()}
    return {**task, "config": config}


def config_hash(record: dict) -> str:
    """Hash of the task's resolved config: rows of differing configs are not comparable."""
    config = _hashed_task(record["task"])["config"]
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record_id(record: dict) -> str:
    """Identity of the measurement: same task/config/model/data/seed/mode -> same id."""
    ident = {"task": _hashed_task(record["task"]), "model": record["model"]["fingerprint"], "data": data_hash(record["dataset"]),
             "seed": record["seed"], "numeric_mode": record["numeric_mode"]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_id(record: dict) -> str:
    """The pretrained / feature networks a record's numbers depend on: "name:sha256[:12]" joined by ";" ("" for none).

    fd_cnn is only comparable between records of the same feature network, LPIPS
    and FID between records of the same weights: the gate refuses rows that differ here.
    """
    weights = record.get("pretrained_weights") or {}
    return ";".join(f"{name}:{(info or {}).get('sha256', '')[:12]}" for name, info in sorted(weights.items()))


def numerics_id(record: dict) -> str:
    """The record's numerics fingerprint id (device, CPU kernels, torch, mode); "" for records that predate it."""
    return (record.get("numerics") or {}).get("id", "")


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def build_record(*, task_cls, cfg, result, model_info: dict, dataset_info: dict, seed: int, numeric_mode: str,
                 numerics: dict, device: str, wall_s: float, created_at: str, environment: dict, git: dict, machine: dict,
                 pretrained_weights: dict, cache: dict) -> dict:
    metrics = []
    for v in result.values:
        m = task_cls.metric(v.family)
        metrics.append({**asdict(v), "value": _finite(v.value), "ci_low": _finite(v.ci_low), "ci_high": _finite(v.ci_high),
                        "higher_is_better": m.higher_is_better, "main": m.main, "ideal": m.ideal})
    rec = {
        "schema_version": SCHEMA_VERSION,
        "created_at": created_at,
        "task": {"name": task_cls.name, "version": task_cls.version, "config": asdict(cfg)},
        "model": model_info,
        "dataset": dataset_info,
        "metrics": metrics,
        "declared_metrics": [asdict(m) for m in task_cls.metrics],
        "notes": list(result.notes),
        "figures": list(result.figures),
        "extra": result.extra,
        "seed": seed,
        "numeric_mode": numeric_mode,
        "numerics": numerics,
        "device": device,
        "wall_s": round(wall_s, 3),
        "environment": environment,
        "git": git,
        "machine": machine,
        "pretrained_weights": pretrained_weights,
        "cache": cache,
    }
    rec["record_id"] = record_id(rec)
    return rec


def record_filename(record: dict) -> str:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))
    return f"{safe(record['task']['name'])}__{safe(record['model']['label'])}__{safe(record['dataset']['name'])}.json"


def write_record(run_dir: Path, record: dict) -> Path:
    path = Path(run_dir) / record_filename(record)
    atomic_write_json(path, record)
    return path


def load_record(path: str | Path) -> dict:
    p = Path(path)
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read record {p}: {e}") from None
    if not isinstance(rec, dict) or rec.get("schema_version") != SCHEMA_VERSION or "metrics" not in rec:
        raise BenchError(f"{p} is not a diffae_bench result record (schema {SCHEMA_VERSION})")
    return rec


def find_records(paths) -> list[Path]:
    """Record files under the given files/directories (recursively), sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.json") if q.name != "run.json")
        elif p.is_file():
            out.append(p)
        else:
            raise BenchError(f"no record file or directory at {p}")
    return out


def record_rows(record: dict) -> list[dict]:
    """The long-format rows of a record: one per metric value, columns ROW_COLUMNS."""
    base = {
        "record_id": record["record_id"], "created_at": record["created_at"],
        "task": record["task"]["name"], "task_version": record["task"]["version"], "config_hash": config_hash(record),
        "model": record["model"]["label"], "model_kind": record["model"]["kind"],
        "model_fingerprint": record["model"]["fingerprint"][:16],
        "dataset": record["dataset"]["name"], "data_hash": data_hash(record["dataset"]),
        "numeric_mode": record["numeric_mode"], "numerics": numerics_id(record), "weights": weights_id(record),
        "seed": record["seed"], "git_commit": (record["git"].get("commit") or "")[:12],
    }
    rows = []
    for m in record["metrics"]:
        rows.append({**base, "metric": m["key"], "family": m["family"], "value": m["value"], "ci_low": m["ci_low"],
                     "ci_high": m["ci_high"], "n": m["n"], "higher_is_better": m["higher_is_better"], "main": m["main"],
                     "ideal": m.get("ideal")})
    return [{c: r[c] for c in ROW_COLUMNS} for r in rows]
