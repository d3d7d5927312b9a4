#!/usr/bin/env bash
# Issue 21, part 2: one further training leg of the six references in ONE device call (no evaluation:
# section 3 is measured on the CPU afterwards). All six train at once on the one GPU, each from the
# weights in $INIT_FROM/<name> (diffae_bench/training/legs.py), and stop at an image total that is the same for
# the three models of a data set (MNIST_IMAGES, SHAPES_IMAGES: over all legs, so the comparison between
# Diff-AE, DDIM and DMZ stays at equal budgets); SECONDS is only a cap. A model that reaches its total
# early frees the GPU for the others (they share it by time slicing).
# Recipe of this leg (recorded per leg in each manifest): fp32 (on an H200 fp32 trained faster than the
# bf16-cl fast step at these sizes: notes/gpu-2026-11-26 profile, 7,223 vs 6,593 img/s at batch 1024),
# batch 1024 (the step is launch-bound below that), lr 4e-4 (leg 1's; below the sqrt-batch rule's 8e-4,
# since this leg continues trained weights with a fresh Adam state and no warm-up).
# Back in $OUT (8 files at most): model-<name>.tar x 6 (exports without the old latent file), logs.tar.gz.
#
#   device run:  INIT_FROM=.leg/init bash scripts/gpu_leg.sh     carry: .whl .refdata .leg    (timeout_s 590)
#   next leg:    DATASETS=shapes INIT_FROM=results/models INIT_SHAPES=none BATCH_SHAPES=256 LR_SHAPES=4e-4 WARMUP=200
#                PREDICTION=v SHAPES_IMAGES=640000 SECONDS_CAP=360 bash scripts/gpu_leg.sh   carry: nothing  (timeout_s 590)
#                (PREDICTION=v: with eps the shapes samples keep grey backgrounds at these budgets; a small DDIM
#                with v met the background goal at 96k images on the CPU: results/diagnostics/2026-11-28_background_eps_vs_v)
#                (the step is launch-bound at ~112 ms of CPU dispatch, ~9 steps/s per process whatever the batch:
#                360 s buy ~3,000 steps, so batch 256 x 2,500 steps, 4x the references' images at their steps,
#                leaves margin for three processes sharing the GPU; lr by the sqrt-batch rule from 2e-4 at 64.
#                CPU smoke of the same: SMOKE=1 PY=.venv/bin/python DATASETS=shapes INIT_FROM=results/models
#                INIT_SHAPES=none LEG_SLACK=500, 79 s.)
#                (shapes is generated, so the call needs no data: the tree alone is 56.4 MiB of the 64 MiB a
#                call may send. MNIST legs carry .refdata, a copy of ../shared/data/mnist, not a link: 10.9 MiB,
#                which puts the call 3.3 MiB over the limit since 2026-11-27; the tracked tree must shrink first.
#                New-architecture shapes exports take 22.1 MB against the legacy references' 26.0 MB (smoke
#                tars), so replacing the shapes references frees 3.7 MiB: an MNIST call would then just fit.)
#   before any call, here: python3 scripts/device_payload.py [CARRY ...]   (exit 1: the call would be refused)
#   after the call, here:  bash scripts/judge_leg.sh shapes <files_at> <new WORK folder>   (the CPU evaluation,
#                the tasks the replacement rule reads first, then the verdict; the other tasks only if it is met)
#   smoke here:  SMOKE=1 PY=.venv/bin/python INIT_FROM=results/models INIT_SHAPES=none LEG_SLACK=500 bash scripts/gpu_leg.sh
#                (CPU, ~4 min: the Diff-AE latent stage encodes all 60,000 MNIST images, past the default slack)
# INIT_MNIST / INIT_SHAPES override INIT_FROM per data set; "none" trains that data set from scratch.
# The committed shapes references are of the legacy architecture and cannot be continued (legs.py
# refuses another network configuration), and the ~700k shapes exports of 2026-11-27 lived outside
# the repository and are gone: the next shapes leg is `INIT_FROM=results/models INIT_SHAPES=none`.
# BATCH_SHAPES / LR_SHAPES (default BATCH / LR) set that data set's recipe: shapes legs 2-3 ran at
# batch 1024 and ended with 1,076-1,164 optimiser steps over 700k images, against the shapes
# references' 2,225-2,578 at batch 64, and did not beat them (the two-legs page).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu-out}"; mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
PY="${PY:-python3}"
SMOKE="${SMOKE:-0}"
INIT_FROM="${INIT_FROM:?INIT_FROM=DIR holding <name>/checkpoint.safetensors for each of the six}"
INIT_MNIST="${INIT_MNIST:-$INIT_FROM}"; INIT_SHAPES="${INIT_SHAPES:-$INIT_FROM}"   # "none": from scratch
DATASETS="${DATASETS:-mnist shapes}"        # the data sets this leg trains (all three models of each)
for data in $DATASETS; do
  case "$data" in mnist|shapes) ;; *) echo "error: unknown data set '$data' in DATASETS (mnist, shapes)" >&2; exit 2;; esac
done
uses() { case " $DATASETS " in *" $1 "*) return 0;; esac; return 1; }
# MNIST travels as a carried copy: without it the MNIST leg would fail after the device time is spent.
if uses mnist && { [ ! -f .refdata/mnist/train-images-idx3-ubyte.gz ] || [ -L .refdata/mnist ]; }; then
  echo "error: DATASETS has mnist but .refdata/mnist is missing or a link: copy ../shared/data/mnist there and carry .refdata" >&2; exit 2
fi
SECONDS_CAP="${SECONDS_CAP:-400}"           # training cap per model
MNIST_IMAGES="${MNIST_IMAGES:-800000}"      # over all legs; the MNIST three start at 421,824
SHAPES_IMAGES="${SHAPES_IMAGES:-540000}"    # over all legs; the shapes three start at 133,632-163,840
BATCH="${BATCH:-1024}"; LR="${LR:-4e-4}"; MODE="${MODE:-fp32}"
BATCH_SHAPES="${BATCH_SHAPES:-$BATCH}"; LR_SHAPES="${LR_SHAPES:-$LR}"
PREDICTION="${PREDICTION:-eps}"             # eps (the paper; legs 1-4) or v (README "Departures": black shapes backgrounds)
WARMUP="${WARMUP:-0}"                       # lr warm-up steps at the leg's start (fresh Adam); 0: none (legs 1-4)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_leg.XXXXXX")"; LOGS="$WORK/logs"; mkdir -p "$LOGS"
SUMMARY="$LOGS/summary.txt"
note() { echo "$*" | tee -a "$SUMMARY"; }
export PYTHONUNBUFFERED=1
DEV=cuda; COMMON=(--diag-every 100 --latent-steps 5000)
if [ "$SMOKE" = "1" ]; then
  DEV=cpu; export OMP_NUM_THREADS=1; SECONDS_CAP=15; BATCH=4; BATCH_SHAPES=4; COMMON=(--diag-every 2 --latent-steps 10)
fi
START=$(date +%s)
note "gpu_leg.sh $(date -u +%FT%TZ) datasets=$DATASETS smoke=$SMOKE device=$DEV cap=${SECONDS_CAP}s batch=$BATCH lr=$LR shapes batch=$BATCH_SHAPES lr=$LR_SHAPES mode=$MODE mnist=$MNIST_IMAGES (from $INIT_MNIST) shapes=$SHAPES_IMAGES (from $INIT_SHAPES) git=$(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
. scripts/gpu_env.sh
[ "$SMOKE" = "1" ] || gpu_wheels "$PY" || note "the carried wheels did not install"
gpu_checkout "$PY"
if [ "$SMOKE" = "1" ]; then  # two steps of 4 past the furthest-trained model of each data set in its INIT folder
  smoke_total() { [ "$2" = none ] && { echo 8; return; }; $PY -c "from diffae_bench.training.legs import images_before as b
print(max(b('$2/' + m + '-small-$1') for m in ('diffae', 'ddim', 'dmz')) + 8)"; }
  for data in $DATASETS; do
    if [ "$data" = mnist ]; then MNIST_IMAGES=$(smoke_total mnist "$INIT_MNIST"); else SHAPES_IMAGES=$(smoke_total shapes "$INIT_SHAPES"); fi
  done
  note "smoke targets: mnist=$MNIST_IMAGES shapes=$SHAPES_IMAGES"
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$SUMMARY"
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$SUMMARY"

leg() {  # leg DATASET IMAGES NAMES [--mnist-root DIR]
  local data=$1 images=$2 names=$3; shift 3
  local init=$INIT_MNIST batch=$BATCH lr=$LR
  [ "$data" = shapes ] && { init=$INIT_SHAPES; batch=$BATCH_SHAPES; lr=$LR_SHAPES; }
  local from=(--init-from "$init"); [ "$init" = none ] && from=()
  timeout -k 10 $(( SECONDS_CAP + ${LEG_SLACK:-150} )) $PY scripts/train_references.py --seconds "$SECONDS_CAP" --images "$images" \
    --only "$names" "${from[@]}" --root "$WORK/runs-$data" --export "$WORK/export-$data" --device $DEV \
    --numeric-mode "$MODE" --fallback-mode "$MODE" --batch-size "$batch" --lr "$lr" --warmup-steps "$WARMUP" --prediction "$PREDICTION" --logs "$LOGS" "${COMMON[@]}" "$@" \
    >> "$LOGS/leg-$data.log" 2>&1
  echo "leg $data: exit $? after $(( $(date +%s) - START )) s" >> "$SUMMARY"
}
# cuDNN's autotuning at the first step took ~99 GiB in one process when six started at once (2026-11-27:
# ddim-small-mnist ran out of memory at step 0): cap its workspace, start the two data sets 15 s apart,
# and rerun a model that failed on its own afterwards (alone it trains at ~7,000 img/s).
export CUDNN_CONV_WSCAP_DBG=4096
uses mnist && leg mnist "$MNIST_IMAGES" diffae-small-mnist,ddim-small-mnist,dmz-small-mnist --mnist-root .refdata/mnist &
uses mnist && uses shapes && sleep 15
uses shapes && leg shapes "$SHAPES_IMAGES" diffae-small-shapes,ddim-small-shapes,dmz-small-shapes &
wait
# What comes back is what is in $OUT when the call ends, also when it is killed at its timeout:
# collect the exports and logs as soon as the legs end, and again after any rerun.
collect() {
  for data in $DATASETS; do
    for d in "$WORK"/runs-$data/*/; do
      n=$(basename "$d"); cp "$d/x0_diagnostic.jsonl" "$LOGS/x0-$n.jsonl" 2>/dev/null; cp "$d/config.json" "$LOGS/config-$n.json" 2>/dev/null
    done
    cp "$WORK/export-$data/manifest.json" "$LOGS/manifest-$data.json" 2>/dev/null
    for d in "$WORK"/export-$data/*/; do
      [ -d "$d" ] && tar cf "$OUT/model-$(basename "$d").tar" -C "$WORK/export-$data" "$(basename "$d")"
    done
  done
  tar czf "$OUT/logs.tar.gz" -C "$WORK" logs
}
collect
# A rerun only where a whole leg still fits before DEADLINE_S (the call's timeout_s less a margin).
DEADLINE_S="${DEADLINE_S:-$([ "$SMOKE" = 1 ] && echo 100000 || echo 570)}"
NAMES=(); for data in $DATASETS; do NAMES+=(diffae-small-$data ddim-small-$data dmz-small-$data); done
RERUN=0
for name in "${NAMES[@]}"; do
  data=${name##*-}; [ -f "$WORK/export-$data/$name/checkpoint.safetensors" ] && continue
  left=$(( START + DEADLINE_S - $(date +%s) )); need=$(( SECONDS_CAP + ${LEG_SLACK:-150} ))
  if [ "$left" -lt "$need" ]; then note "$name failed; no rerun: ${left} s left before the deadline, a leg may take ${need} s"; continue; fi
  images=$MNIST_IMAGES; extra=(--mnist-root .refdata/mnist); [ "$data" = shapes ] && { images=$SHAPES_IMAGES; extra=(); }
  mv "$WORK/runs-$data/$name" "$WORK/runs-$data/$name.failed" 2>/dev/null
  note "rerun $name alone"; leg "$data" "$images" "$name" "${extra[@]}"; RERUN=1
done
cat "$SUMMARY"; cat "$LOGS"/leg-*.log | grep -vE '^\s*$' | tail -n 40
[ "$RERUN" = 1 ] && collect
ls -la "$OUT"; note "total $(( $(date +%s) - START )) s"
grep -hE '^\{"name"' "$LOGS"/train-*.log | cut -c1-300
