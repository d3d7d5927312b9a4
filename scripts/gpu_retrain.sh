#!/usr/bin/env bash
# Issue 21 (and issue 20's paper64 perf row) in ONE device call of at most 10 minutes:
#   1 perf      bench perf --device cuda, small and paper64: eager fp32 vs bf16 vs bench train's fast
#               step (bf16-cl autocast, fp32 master weights, fused Adam, data on the GPU)
#   2 train     the six references from scratch in the current (official-parity) architecture, all at
#               once on the one GPU (scripts/train_references.py): fast step, batch 256, lr 4e-4 (the
#               sqrt batch rule from the preset's 2e-4 at 64; the manifest records it as recipe_change),
#               each for the same wall-clock budget; a run whose fast step fails early restarts in fp32.
#               Then Diff-AE's latent DDIMs, and the fp16 exports with their manifest.
#   3 eval      every task on the six new models (scripts/evaluate_references.py, fp32 networks, seed 0),
#               one process per model, until the budget ends; what did not finish runs on a CPU later.
# Back in $OUT (8 files at most): model-<name>.tar x 6, records.tar.gz, logs.tar.gz (perf table, train
# and eval logs, x0 diagnostics, manifest.json, summary.txt).
#
#   device run:  bash scripts/gpu_retrain.sh        carry: .whl .refdata     (timeout_s 600)
#   smoke here:  SMOKE=1 PY=.venv/bin/python bash scripts/gpu_retrain.sh   (CPU, tiny sizes, ~3 min)
#   a further leg: INIT_FROM=DIR bash scripts/gpu_retrain.sh, DIR holding the previous leg's exports (<DIR>/<name>,
#               carried): each run starts from those weights (diffae_bench/training/legs.py) and the manifest lists every leg.
#               The committed results/models are the legacy architecture, so they cannot seed a leg (refused).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PY:-python3}"
SMOKE="${SMOKE:-0}"
BUDGET_S="${BUDGET_S:-570}"        # the whole script, inside the call's 600 s
EVAL_S="${EVAL_S:-225}"            # kept for step 3
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_retrain.XXXXXX")"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
SUMMARY="$LOGS/summary.txt"
note() { echo "$*" | tee -a "$SUMMARY"; }
export PYTHONUNBUFFERED=1
export DIFFAE_BENCH_CACHE="$WORK/cache"

if [ "$SMOKE" = "1" ]; then
  DEV=cpu
  export OMP_NUM_THREADS=1
  PERF=(--presets tiny --train-batches 8 --batch-size 8 --seconds 0.3 --steps-per-call 2 --modes bf16)
  TRAIN=(--batch-size 8 --lr 4e-4 --diag-every 5 --latent-steps 20 --only diffae-small-shapes,dmz-small-shapes)
  EVAL=(--smoke --threads 1 --only diffae-small-shapes,dmz-small-shapes)
  MNIST=()
else
  DEV=cuda
  PERF=(--presets small,paper64 --train-batches 256 --batch-size 512 --seconds 1.5 --modes bf16)
  TRAIN=(--batch-size 256 --lr 4e-4 --diag-every 500 --latent-steps 5000)
  EVAL=(--threads 2 --tasks reconstruction,linear_probe,sample_fid,fake_detection,interpolation,z_usage,attribute_manipulation,disentanglement,fewshot_fid,memorization)
  MNIST=(--mnist-root .refdata/mnist)
fi

note "gpu_retrain.sh $(date -u +%FT%TZ) smoke=$SMOKE device=$DEV budget=${BUDGET_S}s git=$(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
# 0. packages: torch-fidelity and lpips travel as wheels (not in that machine's image)
. scripts/gpu_env.sh
[ "$SMOKE" = "1" ] || gpu_wheels "$PY" || note "the carried wheels did not install"
gpu_checkout "$PY"
$PY -c "import torch, sklearn, scipy, pandas, typer, safetensors, tqdm, torch_fidelity, lpips, skimage
print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$SUMMARY"
[ "$DEV" = cuda ] && { nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$SUMMARY"; }

# 1. perf, on an idle GPU (before anything else runs on it)
t0=$(date +%s)
timeout -k 5 75 $PY -m diffae_bench.cli perf --device $DEV --models diffae --fast "${PERF[@]}" > "$LOGS/perf.log" 2>&1
note "perf: exit $? after $(( $(date +%s) - t0 )) s"
grep -E '^(machine|fast =|model |diffae |\(x =)' "$LOGS/perf.log"

# 2. train: what is left after step 3's share, ~25 s of process start, and ~60 s of latent DDIMs + export
TRAIN_S=$(( $(left) - EVAL_S - 95 ))
[ "$SMOKE" = "1" ] && TRAIN_S=20
note "train: ${TRAIN_S} s per model"
t0=$(date +%s)
timeout -k 10 $(( TRAIN_S + 150 )) $PY scripts/train_references.py --seconds "$TRAIN_S" --root "$WORK/runs" \
  --export "$WORK/export" --device $DEV --numeric-mode bf16-cl --fallback-mode fp32 --logs "$LOGS" \
  "${MNIST[@]}" "${TRAIN[@]}" ${INIT_FROM:+--init-from "$INIT_FROM"} 2>&1 | tee "$LOGS/train.log"
note "train: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
for d in "$WORK"/runs*/*/; do
  n=$(basename "$d"); cp "$d/x0_diagnostic.jsonl" "$LOGS/x0-$n.jsonl" 2>/dev/null; cp "$d/config.json" "$LOGS/config-$n.json" 2>/dev/null
done
cp "$WORK/export/manifest.json" "$LOGS/" 2>/dev/null
for d in "$WORK"/export/*/; do
  [ -d "$d" ] && tar cf "$OUT/model-$(basename "$d").tar" -C "$WORK/export" "$(basename "$d")"
done

# 3. eval, until 15 s before the budget ends
EV=$(( $(left) - 15 ))
note "eval: ${EV} s"
t0=$(date +%s)
timeout -k 5 "$EV" $PY scripts/evaluate_references.py --models "$WORK/export" --out "$WORK/records" --device $DEV \
  --logs "$LOGS" --cache-dir "$WORK/evalcache" "${MNIST[@]}" "${EVAL[@]}" 2>&1 | tee -a "$SUMMARY"
note "eval: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s; total $(( $(date +%s) - START )) s"
pkill -TERM -f "diffae_bench.cli run" && sleep 3  # a timed-out evaluation's processes: records are written whole or not at all
[ -d "$WORK/records" ] && tar czf "$OUT/records.tar.gz" -C "$WORK" records
tar czf "$OUT/logs.tar.gz" -C "$WORK" logs
ls -la "$OUT"
grep -hE '^\{"name"' "$LOGS"/train-*.log | cut -c1-400
