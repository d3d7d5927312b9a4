"""The committed reference models and the fast, fixed subset that checks them (quick start and CI).

results/models/<name>/     the reference models (scripts/train_references.py; manifest.json says how)
results/records/<data>/    every task on every model with the tasks' default configs (the leaderboard)
results/ci/<data>/         the fast subset below, computed on a 2-core CPU: the regression baseline

`python -m diffae_bench.references check` (what `make demo` runs) evaluates the subset on the
committed models on a fresh cache, prints the tables and gates the numbers in two ways:
- statistically, on any machine: `bench compare` against results/ci/<data> (CIs + tolerance);
- exactly, only against a baseline made with the same numerics fingerprint (device, CPU kernel
  family, oneMKL's code path, numpy's BLAS kernels, torch's CPU threads (pinned to CHECK_THREADS
  here), torch, numeric mode;
  results/ci/exact/<fingerprint id>.json): there a number may not
  move beyond REL_TOL unless its task version was bumped. Other CPU kernels (AVX2 vs AVX-512)
  round differently, so across machines only the statistical gate applies.
`--cpu-kernels avx2` runs the subset with ATen's, oneDNN's and oneMKL's AVX2 kernels
(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2), so one machine
checks both kernel families. oneMKL also dispatches by CPU vendor (numerics.mkl_branch), so Intel
and AMD machines hold separate exact baselines.
Each lane also pins OpenBLAS's kernels (numpy / scipy: the probes, Frechet distances) to its
family's (OPENBLAS_CORE): OpenBLAS picks them by CPU model, so two machines that ATen calls
"AVX512" may otherwise run different ones.
After a deliberate change of meaning (task version bump): `python -m diffae_bench.references
regenerate` rewrites results/ci and the exact baselines for this machine's kernel families.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "results" / "models"
CI_DIR = ROOT / "results" / "ci"
EXACT_DIR = CI_DIR / "exact"  # <numerics fingerprint id>.json: {data: {value key: value}}
# The CPU kernel families a machine can be told to use; "native" = whatever it has.
# oneMKL's cap changes nothing on AMD CPUs (generic path) and keeps Intel ones on their AVX2 path.
CPU_KERNELS = {"native": {},
               "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
# OpenBLAS's kernels per ATen kernel family (OPENBLAS_CORETYPE), pinned in every lane: the 2026-11-27
# AVX-512 baseline reproduces with OpenBLAS's Haswell kernels, and the next AVX-512 EPYC machine's
# OpenBLAS chose SkylakeX, which moved a few-label AUROC by 3e-4 (before linear_probe v3 made ties robust).
OPENBLAS_CORE = {"AVX512": "SkylakeX", "AVX2": "Haswell"}
REFERENCES = [(f"{model}-small-{data}", model, data) for data in ("shapes", "mnist") for model in ("diffae", "ddim", "dmz")]
DATASETS = ("shapes", "mnist")

# The subset: four tasks that between them run the encoder, DDIM inversion and decoding,
# the latent DDIM / Bernoulli prior, the probes, the data-copying test and the decoder's use of
# its code (z_usage), on 32 images per split with T = 10: about 3 minutes on 2 CPU cores.
CI_TASKS = "reconstruction,linear_probe,memorization,z_usage"
CHECK_THREADS = 2  # the CPU threads of every subset run: what results/ci and its exact baselines were made with
CI_OPTIONS = ["--limit", "32", "--T", "10",
              "--set", "linear_probe.few_shot_k=3", "--set", "memorization.T_latent=10",
              "--device", "cpu", "--numeric-mode", "fp32", "--seed", "0",
              # torch's thread count changes bits (numerics.cpu_threads): pinned, so a 3-core (or any) machine
              # computes what the 2-core baselines did and the exact gate holds it to them
              "--threads", str(CHECK_THREADS),
              # results/ci was made without LPIPS weights: a check fetches nothing (244 MB) and compares like with like
              "--offline"]
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


def lane_env(kernels: str) -> dict[str, str]:
    """The environment a lane adds: ATen's / oneDNN's / oneMKL's kernel family and, on x86, OpenBLAS's matching
    kernels; the AVX2 lane also numpy's AVX2 ufunc code (numpy_avx512_targets)."""
    from .numerics import cpu_capability, is_x86

    env = dict(CPU_KERNELS[kernels])
    family = "AVX2" if kernels == "avx2" else cpu_capability()
    if family in OPENBLAS_CORE and is_x86():
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE[family]
    avx512 = numpy_avx512_targets() if kernels == "avx2" else []
    if avx512:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    return env


def numpy_avx512_targets() -> list[str]:
    """numpy's AVX-512 dispatch targets: the AVX2 lane turns them off, so numpy's ufuncs run its AVX2 code as
    on an AVX2 machine. Its exp / log / power give other float64 bits with AVX-512 (measured 2026-11-27);
    the subset's 374 values did not move with them off, so this keeps the lane faithful, not a number.
    Within AVX-512, numpy's sub-targets (AVX512_ICL, AVX512_SPR) are not in the numerics fingerprint: with
    them off (NPY_DISABLE_CPU_FEATURES="AVX512_ICL AVX512_SPR", an AVX-512 CPU without Ice Lake's extensions)
    the native check moved 0 of the 374 values bitwise on the 2026-11-28 EPYC."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # another numpy layout: its dispatch is not steered
        return []
    return [t for t in __cpu_dispatch__ if t == "X86_V4" or t.startswith("AVX512")]


def _bench(args: list[str], kernels: str = "native") -> int:
    """`bench ARGS` in a fresh interpreter with the given CPU kernels (its output goes to ours); its exit code."""
    import subprocess

    env = {**os.environ, **lane_env(kernels)}
    return subprocess.run([sys.executable, "-m", "diffae_bench.cli", *args], cwd=ROOT, env=env).returncode


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json")) if p.name != "run.json"]


def _values(run_dir_or_values) -> dict:
    """{"task|version|model|key": value} of a run directory (or such a dict, returned as is)."""
    if isinstance(run_dir_or_values, dict):
        return run_dir_or_values
    return {f"{r['task']['name']}|{r['task']['version']}|{r['model']['label']}|{m['key']}": m["value"]
            for r in _records(run_dir_or_values) for m in r["metrics"]}


def numerics_id(run_dir: Path) -> str:
    """The numerics fingerprint id shared by a run's records (an error if they disagree)."""
    ids = {(r.get("numerics") or {}).get("id", "") for r in _records(run_dir)}
    if len(ids) != 1 or "" in ids:
        raise RuntimeError(f"{run_dir}: records carry numerics fingerprints {sorted(ids)}; expected exactly one")
    return ids.pop()


def exact_baseline(fingerprint_id: str, data: str) -> dict | None:
    path = EXACT_DIR / f"{fingerprint_id}.json"
    return json.loads(path.read_text()).get(data) if path.is_file() else None


def write_exact_baseline(run_dir: Path, data: str) -> Path:
    fp = numerics_id(run_dir)
    path = EXACT_DIR / f"{fp}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[data] = _values(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


def moved(new, base) -> list[str]:
    """Values that differ beyond REL_TOL between two runs of the subset (run directories or value dicts)."""
    new, base = _values(new), _values(base)
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


def check(out: Path, cache_dir: Path | None = None, quiet: bool = False, kernels: str = "native") -> int:
    """Run the subset on both data sets, print tables, gate against results/ci. 0 = reproduced.

    A fresh cache unless cache_dir is given: a check must compute, never be served a stale entry.
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="diffae-bench-check-") as tmp:
            return check(out, Path(tmp), quiet, kernels)
    bad, notes = [], []
    for data in DATASETS:
        run_dir = out / data
        shutil.rmtree(run_dir, ignore_errors=True)
        rc = _bench(subset_args(data, run_dir, cache_dir, quiet), kernels)
        if rc != 0:
            return rc
        rc = _bench(["compare", str(run_dir), "--baseline", str(CI_DIR / data)])
        if rc != 0:
            bad.append(f"bench compare failed on {data} (exit {rc}: 1 = regression or missing metric, 2 = incomparable)")
        fp = numerics_id(run_dir)
        exact = exact_baseline(fp, data)
        if exact is None:
            notes.append(f"{data}: no exact baseline for numerics {fp}: statistical gate only")
        else:
            bad += [f"{data} [{fp}]: {m}" for m in moved(run_dir, exact)]
            notes.append(f"{data}: every value within {REL_TOL:g} relative of the {fp} baseline")
    if bad:
        print("reference subset did NOT reproduce results/ci:", *bad, sep="\n  ", file=sys.stderr)
        print("if a task's meaning changed on purpose: bump its version and run "
              "`python -m diffae_bench.references regenerate`", file=sys.stderr)
        return 1
    print(f"reference subset passed the gate against results/ci on {', '.join(DATASETS)} ({kernels} CPU kernels):",
          *notes, sep="\n  ")
    return 0


def timing(out: Path) -> int:
    """The subset twice on a fresh cache: wall time of each run and their ratio (issue 7's < 10 % target)."""
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
    """results/ci/<data> (the statistical baseline, native kernels) and the exact baselines of both kernel families."""
    EXACT_DIR.mkdir(parents=True, exist_ok=True)
    for p in EXACT_DIR.glob("*.json"):
        p.unlink()  # baselines of other machines' kernels are stale too after a change of meaning
    with tempfile.TemporaryDirectory(prefix="diffae-bench-regen-") as tmp:
        for kernels in CPU_KERNELS:
            for data in DATASETS:
                run_dir = CI_DIR / data if kernels == "native" else Path(tmp) / kernels / data
                shutil.rmtree(run_dir, ignore_errors=True)
                rc = _bench(subset_args(data, run_dir, cache_dir=Path(tmp) / "cache"), kernels)
                if rc != 0:
                    return rc
                print(f"wrote {write_exact_baseline(run_dir, data).relative_to(ROOT)} [{data}]")
    return 0


def commit_feature_nets() -> int:
    """Train the fd_cnn networks of the reference data sets here and write them to results/feature_nets."""
    from .data import load_dataset
    from .metrics.frechet import FeatureNetConfig, commit_feature_net

    for data in DATASETS:
        train, test = (load_dataset(data, split, image_size=32) for split in ("train", "test"))
        print(f"wrote {commit_feature_net(train, test, FeatureNetConfig()).relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m diffae_bench.references", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="evaluate the fast subset on the committed models and gate it against results/ci")
    c.add_argument("--out", default="runs/reference-check", help="run directories for the new records")
    c.add_argument("--cache-dir", default=None, help="cache (default: the usual one)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--cpu-kernels", choices=list(CPU_KERNELS), default="native",
                   help="avx2: run with ATen/oneDNN AVX2 kernels (checks the other kernel family on an AVX-512 CPU)")
    sub.add_parser("regenerate", help="recompute results/ci (after a deliberate task version bump)")
    sub.add_parser("feature-nets", help="train the fd_cnn networks here and write them to results/feature_nets")
    t = sub.add_parser("timing", help="run the subset twice on a fresh cache and print both wall times")
    t.add_argument("--out", default="runs/reference-timing")
    a = ap.parse_args(argv)
    if a.cmd == "check":
        return check(Path(a.out), Path(a.cache_dir) if a.cache_dir else None, a.quiet, a.cpu_kernels)
    if a.cmd == "timing":
        return timing(Path(a.out))
    if a.cmd == "feature-nets":
        return commit_feature_nets()
    return regenerate()


if __name__ == "__main__":
    sys.exit(main())
