"""The committed reference models and the fast, fixed subset that checks them (quick start and CI).

results/models/<name>/     the reference models (scripts/train_references.py; manifest.json says how)
results/records/<data>/    every task on every model with the tasks' default configs (the leaderboard)
results/ci/<data>/         the fast subset below, computed on a 2-core CPU: the regression baseline

`python -m diffae_bench.references check` (what `make demo` runs) evaluates the subset on the
committed models, prints the tables and gates the numbers against results/ci with `bench compare`
plus an exact-reproduction check: on the same kind of machine a number may not move at all unless
its task version was bumped (compare then refuses the rows) and results/ci regenerated with
`python -m diffae_bench.references regenerate`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "results" / "models"
CI_DIR = ROOT / "results" / "ci"
REFERENCES = [(f"{model}-small-{data}", model, data) for data in ("shapes", "mnist") for model in ("diffae", "ddim", "dmz")]
DATASETS = ("shapes", "mnist")

# The subset: three tasks that between them run the encoder, DDIM inversion and decoding,
# the latent DDIM / Bernoulli prior, the probes and the data-copying test, on 32 images per
# split with T = 10: about 3 minutes on 2 CPU cores for the six models.
CI_TASKS = "reconstruction,linear_probe,memorization"
CI_OPTIONS = ["--limit", "32", "--steps", "10", "--set", "linear_probe.x_T_steps=10",
              "--set", "linear_probe.few_shot_k=3", "--set", "memorization.T=10", "--set", "memorization.T_latent=10",
              "--device", "cpu", "--numeric-mode", "fp32", "--seed", "0"]
# MNIST's first 32 images lack some digits (no 8 among the test ones): probe digits present in both splits.
SUBSET_DATA_OPTIONS = {"mnist": ["--set", "linear_probe.attributes=digit_0,digit_1,digit_7"]}
REL_TOL = 1e-4  # same machine type, same code: numbers must reproduce to float noise


def subset_args(dataset: str, out: Path, cache_dir: Path | None = None, quiet: bool = True) -> list[str]:
    models = ",".join(str(MODELS_DIR / name) for name, _, data in REFERENCES if data == dataset)
    args = ["run", "--task", CI_TASKS, "--model", models, "--dataset", dataset, "--out", str(out), *CI_OPTIONS,
            *SUBSET_DATA_OPTIONS.get(dataset, [])]
    if cache_dir is not None:
        args += ["--cache-dir", str(cache_dir)]
    return args + (["--quiet"] if quiet else [])


def _bench(args: list[str]) -> int:
    """`bench ARGS` in a fresh interpreter (its output goes to ours); its exit code."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *args], cwd=ROOT).returncode


def _values(run_dir: Path) -> dict:
    out = {}
    for p in sorted(run_dir.glob("*.json")):
        if p.name == "run.json":
            continue
        rec = json.loads(p.read_text())
        for m in rec["metrics"]:
            out[(rec["task"]["name"], rec["task"]["version"], rec["model"]["label"], m["key"])] = m["value"]
    return out


def moved(new_dir: Path, base_dir: Path) -> list[str]:
    """Values that differ beyond REL_TOL between two runs of the subset (same task versions)."""
    new, base = _values(new_dir), _values(base_dir)
    out = []
    for k in sorted(set(new) | set(base), key=str):
        if k not in new or k not in base:
            out.append(f"{k}: {'missing in the new run' if k not in new else 'new, not in results/ci'}")
            continue
        a, b = new[k], base[k]
        if a is None or b is None:  # undefined (NaN) values must stay undefined
            if a is not b:
                out.append(f"{k}: {b} -> {a}")
        elif not (a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1e-12))):
            out.append(f"{k}: {b} -> {a}")
    return out


def check(out: Path, cache_dir: Path | None = None, quiet: bool = False) -> int:
    """Run the subset on both data sets, print tables, gate against results/ci. 0 = reproduced."""
    bad = []
    for data in DATASETS:
        run_dir = out / data
        rc = _bench(subset_args(data, run_dir, cache_dir, quiet))
        if rc != 0:
            return rc
        rc = _bench(["compare", str(run_dir), "--baseline", str(CI_DIR / data)])
        if rc != 0:
            bad.append(f"bench compare found a regression on {data} (exit {rc})")
        bad += [f"{data}: {m}" for m in moved(run_dir, CI_DIR / data)]
    if bad:
        print("reference subset did NOT reproduce results/ci:", *bad, sep="\n  ", file=sys.stderr)
        print("if a task's meaning changed on purpose: bump its version and run "
              "`python -m diffae_bench.references regenerate`", file=sys.stderr)
        return 1
    print(f"reference subset reproduced results/ci on {', '.join(DATASETS)} (every value within {REL_TOL:g} relative)")
    return 0


def timing(out: Path) -> int:
    """The subset twice on a fresh cache: wall time of each run and their ratio (issue 7's < 10 % target)."""
    import shutil
    import tempfile
    import time

    from .provenance import machine

    cache = Path(tempfile.mkdtemp(prefix="diffae-bench-timing-"))
    try:
        walls = []
        for i in (1, 2):
            t0 = time.perf_counter()
            rc = check(out / f"run{i}", cache_dir=cache, quiet=True)
            walls.append(time.perf_counter() - t0)
            if rc != 0:
                return rc
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    m = machine()
    print(f"machine: {m['node']} | {m['cpu']} | reference subset ({CI_TASKS}) on {len(REFERENCES)} models")
    print(f"first run (empty cache): {walls[0]:.0f} s; second run (served from the cache): {walls[1]:.0f} s "
          f"= {100 * walls[1] / walls[0]:.0f} % of the first")
    return 0


def regenerate() -> int:
    import shutil

    for data in DATASETS:
        shutil.rmtree(CI_DIR / data, ignore_errors=True)
        rc = _bench(subset_args(data, CI_DIR / data, cache_dir=None))
        if rc != 0:
            return rc
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diffae_bench.references", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="evaluate the fast subset on the committed models and gate it against results/ci")
    c.add_argument("--out", default="runs/reference-check", help="run directories for the new records")
    c.add_argument("--cache-dir", default=None, help="cache (default: the usual one)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser("regenerate", help="recompute results/ci (after a deliberate task version bump)")
    t = sub.add_parser("timing", help="run the subset twice on a fresh cache and print both wall times")
    t.add_argument("--out", default="runs/reference-timing")
    a = ap.parse_args(argv)
    if a.cmd == "check":
        return check(Path(a.out), Path(a.cache_dir) if a.cache_dir else None, a.quiet)
    if a.cmd == "timing":
        return timing(Path(a.out))
    return regenerate()


if __name__ == "__main__":
    sys.exit(main())
