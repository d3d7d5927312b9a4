#!/usr/bin/env bash
# Issue 21, part 1: training and sampling speed on one GPU, in one prepared run.
#
#   bash scripts/gpu_perf.sh                   # on the GPU machine, from the repository root
#   GPU_PERF_SMOKE=1 bash scripts/gpu_perf.sh  # the same steps on the CPU at tiny size (about 2 minutes)
#
# Steps, each under `timeout` (one failure does not eat the rest) and all within
# GPU_PERF_BUDGET_S seconds (default 390, for a 7-minute slot):
#   0 deps      the Python packages bench needs, the GPU (nvidia-smi)
#   1 perf      bench perf --device cuda, small: eager fp32 vs bf16 vs the fast step, train batches 64
#               and 256, sampling/inversion evals/s at batch 1024, peak memory
#   2 perf      the same for paper64 (train batches 128 and 256, eval batch 256)
#   3 train     a 60-second bench train of Diff-AE small on shapes with the fast step (bf16-cl, batch 256,
#               lr 4e-4: the sqrt batch rule from the preset's 2e-4 at 64; recorded as recipe_change),
#               with the high-t x0 diagnostic every 250 steps
#   4 accuracy  bf16-cl and bf16 against fp32 on that run: training loss and gradient on the same batches
#   5 compile   if time is left: the fast step torch.compile'd (reduce-overhead = CUDA graphs), batch 256
# Logs, x0_diagnostic.jsonl, summary.txt and results.md (the tables) go to $OUT (default ./gpu-out):
# 8 files at most. The training run
# itself (checkpoints, about 100 MB) stays in a temporary folder; only its small logs are copied.
#
# No network and no install on the GPU machine: the code runs from this checkout with the system
# python3 (override: PYTHON=...). `PYTHONPATH=. python3 -m diffae_bench.cli` alone is not enough:
# tasks/ and baselines/ install as diffae_bench.tasks / diffae_bench.baselines (pyproject.toml), so
# the launcher below adds the repository root to the package's search path first.
set -u
cd "$(dirname "$0")/.."

OUT="${OUT:-./gpu-out}"
PY="${PYTHON:-python3}"
SMOKE="${GPU_PERF_SMOKE:-0}"
BUDGET_S="${GPU_PERF_BUDGET_S:-390}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_perf.XXXXXX")"
export DIFFAE_BENCH_CACHE="$WORK/cache"  # nothing of the suite's cache in $OUT or $HOME
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
BENCH=("$PY" -c 'import os, sys, diffae_bench
diffae_bench.__path__.append(os.getcwd())  # diffae_bench.tasks -> ./tasks, diffae_bench.baselines -> ./baselines
sys.argv[0] = "bench"
from diffae_bench.cli import main
main()')

if [ "$SMOKE" = "1" ]; then
  DEV=cpu
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  P1=(--presets tiny --train-batches 4,8 --batch-size 4 --seconds 0.3 --steps-per-call 2)
  P2=(--presets tiny --train-batches 8 --batch-size 4 --seconds 0.3 --steps-per-call 2 --modes fp32)
  TRAIN=(--preset tiny --image-size 16 --limit 256 --batch-size 8 --lr 4e-3 --max-seconds 3 --diag-every 4
         --numeric-mode bf16-cl)
  ACC=(--batch-size 8 --batches 1)
  COMPILE="${GPU_PERF_SMOKE_COMPILE:-0}"  # compiling on a CPU takes minutes: off unless asked
  P5=(--presets tiny --train-batches 8 --seconds 0.3 --steps-per-call 2)
  LIMITS=(60 60 90 60 240)
else
  DEV=cuda
  P1=(--presets small --train-batches 64,256 --batch-size 1024 --seconds 3 --modes bf16)
  P2=(--presets paper64 --train-batches 128,256 --batch-size 256 --seconds 3 --modes fp32)
  TRAIN=(--preset small --batch-size 256 --lr 4e-4 --max-seconds 60 --diag-every 250 --numeric-mode bf16-cl)
  ACC=(--batch-size 256 --batches 4)
  COMPILE=1
  P5=(--presets small --train-batches 256 --seconds 3 --compile-mode reduce-overhead)
  LIMITS=(150 120 110 60 240)
fi

START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
note() { echo "$*" | tee -a "$SUMMARY"; }

# run NAME LIMIT_S CMD...: CMD under timeout (at most what the budget leaves), output to $OUT/NAME.log
run() {
  local name=$1 limit=$2 l t0 rc
  shift 2
  l=$(left)
  if [ "$l" -lt 30 ]; then note "SKIP $name: ${l} s of the budget left"; return 1; fi
  [ "$limit" -gt $(( l - 10 )) ] && limit=$(( l - 10 ))
  echo "=== $name (limit ${limit} s): bench ${*:4}"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  note "$name: exit $rc after $(( $(date +%s) - t0 )) s$([ $rc -eq 124 ] && echo ' (TIMED OUT)')"
  grep -v -E '^\s*$|it/s\]|step/s\]|s/step\]' "$OUT/$name.log" | tail -n 30
  return $rc
}

note "gpu_perf.sh: $(date -u +%FT%TZ) smoke=$SMOKE device=$DEV budget=${BUDGET_S}s git=$(git rev-parse --short HEAD 2>/dev/null || echo n/a)"

# 0. what this python has: the script stops here if bench cannot run at all
"$PY" - > "$WORK/deps.log" 2>&1 <<'EOF'
import importlib
needed = ("torch", "numpy", "pandas", "typer", "safetensors", "tqdm", "PIL")  # bench train / bench perf
suite = ("sklearn", "scipy", "skimage", "torchvision", "torch_fidelity", "lpips", "matplotlib")  # the tasks
missing = {}
for name in needed + suite:
    try:
        importlib.import_module(name)
    except Exception as e:
        missing[name] = f"{type(e).__name__}: {e}"
for name, why in missing.items():
    print(f"MISSING {name} ({'needed by bench train/perf' if name in needed else 'suite only'}): {why}")
if not missing:
    print("python packages: all present")
import torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16: {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
raise SystemExit(1 if any(n in missing for n in needed) else 0)
EOF
DEPS_RC=$?
tee -a "$SUMMARY" < "$WORK/deps.log"
if [ "$DEV" = cuda ]; then
  { nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm,power.limit --format=csv 2>&1 || true; } | tee -a "$SUMMARY"
fi
if [ $DEPS_RC -ne 0 ]; then
  note "STOP: a package bench train/perf needs is missing (above); nothing else can run."
  exit 1
fi

run perf_small "${LIMITS[0]}" "${BENCH[@]}" perf --device "$DEV" --models diffae --fast "${P1[@]}"
run perf_paper64 "${LIMITS[1]}" "${BENCH[@]}" perf --device "$DEV" --models diffae --fast "${P2[@]}"
RUN_DIR="$WORK/train-small-shapes"
run train_small "${LIMITS[2]}" "${BENCH[@]}" train --kind diffae --dataset shapes --device "$DEV" --steps 100000000 \
  --ckpt-every 100000000 --out "$RUN_DIR" "${TRAIN[@]}"
cp "$RUN_DIR/x0_diagnostic.jsonl" "$OUT/x0_diagnostic.jsonl" 2>/dev/null || note "no x0_diagnostic.jsonl written"
if [ -f "$RUN_DIR/checkpoint.safetensors" ]; then
  run accuracy "${LIMITS[3]}" "${BENCH[@]}" perf --accuracy --run "$RUN_DIR" --device "$DEV" --modes bf16-cl,bf16 "${ACC[@]}"
else
  note "SKIP accuracy: the training run left no checkpoint"
fi
if [ "$COMPILE" = "1" ]; then
  run perf_compile "${LIMITS[4]}" "${BENCH[@]}" perf --device "$DEV" --models diffae --modes fp32 --fast --compile \
    --no-eval "${P5[@]}"
fi

# results.md: the tables and summaries of every step, in one place
{
  echo "# gpu_perf.sh results ($(date -u +%FT%TZ), smoke=$SMOKE, device=$DEV)"
  for name in perf_small perf_paper64 perf_compile; do
    [ -f "$OUT/$name.log" ] || continue
    echo; echo "## $name"; echo '```'
    grep -E '^(machine|fast =|model |diffae |\(x =)' "$OUT/$name.log"
    echo '```'
  done
  if [ -f "$OUT/train_small.log" ]; then
    echo; echo "## train_small (60 s of bench train, fast step)"; echo '```'
    grep -E '^(high-t|  with another|done:|interrupted|error|note:)' "$OUT/train_small.log"
    "$PY" -c 'import json, sys; c = json.load(open(sys.argv[1]))
print("recipe_change:", c["recipe_change"]); print("numerics:", json.dumps(c["numerics"]))' "$RUN_DIR/config.json" 2>&1
    echo '```'
  fi
  if [ -f "$OUT/accuracy.log" ]; then
    echo; echo "## accuracy (train path)"; echo '```'; grep -E '^(train|machine)' "$OUT/accuracy.log"; echo '```'
  fi
  echo; echo "## steps"; echo '```'; cat "$SUMMARY"; echo '```'
} > "$OUT/results.md"
note "total $(( $(date +%s) - START )) s; results in $OUT/results.md"
rm -rf "$WORK"
cat "$OUT/results.md"
