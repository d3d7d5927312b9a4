"""Evaluate every task on the six committed reference models: results/records and the leaderboard.

One `bench run` process per (model, data set), all at once (on a GPU they share it; give
each a couple of CPU threads for the probes' scikit-learn fits), with the tasks' default
configs, float32 networks (the same numeric mode a CPU user gets, so CPU runs compare with
these rows) and seed 0. Records go to <out>/<data>/<model>/; then

    bench leaderboard <out> --output results/leaderboard.csv --markdown results/leaderboard.md

rebuilds the leaderboard from them. On a GPU machine:

    python scripts/evaluate_references.py --out results/records --mnist-root .refdata/mnist

`--smoke` runs a tiny version (24 images, T = 10; two fast tasks unless --tasks names others) to test the
script on a CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffae_bench.references import MODELS_DIR, REFERENCES  # noqa: E402
from diffae_bench.harness.task import task_names  # noqa: E402

SMOKE = ["--limit", "24", "--T", "10"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/records", help="records: <out>/<data>/<model>/")
    ap.add_argument("--mnist-root", default=None, help="folder with MNIST's IDX files")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    ap.add_argument("--cache-dir", default="/tmp/diffae-bench-eval-cache")
    ap.add_argument("--only", default=None, help="comma-separated reference names")
    ap.add_argument("--models", default=str(MODELS_DIR), help="folder holding the exported models, one folder per name")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: every registered task)")
    ap.add_argument("--smoke", action="store_true", help="a tiny run to test this script")
    ap.add_argument("--logs", default=None, help="write each process's output to <logs>/eval-<name>.log")
    a = ap.parse_args()
    tasks = a.tasks.split(",") if a.tasks else ["reconstruction", "linear_probe"] if a.smoke else task_names()
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    procs = []
    for name, _, data in REFERENCES:
        if (a.only and name not in a.only.split(",")) or not (Path(a.models) / name).is_dir():
            continue
        out = Path(a.out) / data / name
        cmd = [sys.executable, "-m", "diffae_bench.cli", "run", "--offline",  # weights are carried, never fetched
               "--task", ",".join(tasks), "--model", str(Path(a.models) / name),
               "--dataset", data, "--out", str(out), "--numeric-mode", "fp32", "--device", a.device, "--seed", "0",
               "--cache-dir", a.cache_dir, "--quiet",
               # torch honours OMP_NUM_THREADS only up to the core count; --threads sets (and records) it exactly
               "--threads", str(a.threads)]
        if data == "mnist" and a.mnist_root:
            cmd += ["--data-root", a.mnist_root]
        if a.smoke:
            cmd += SMOKE + (["--set", "linear_probe.few_shot_k=3"] if "linear_probe" in tasks else [])
        if a.logs:
            Path(a.logs).mkdir(parents=True, exist_ok=True)
        log = open(Path(a.logs) / f"eval-{name}.log", "w") if a.logs else None
        procs.append((name, time.perf_counter(), subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)))
    failed = []
    for name, t0, p in procs:
        rc = p.wait()
        print(f"{name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
