#!/usr/bin/env bash
# After a GPU leg (scripts/gpu_leg.sh): evaluate one data set's returned models on this CPU and judge them
# by the current replacement rule (diffae_bench/reporting/replacement.py), the tasks the verdict reads
# first: where the rule is not met (shapes, 2026-11-27), the other tasks' hour of CPU is not spent.
#
#   bash scripts/judge_leg.sh DATA FILES_AT WORK        e.g. shapes <the device call's files_at> /work/legs/leg5
#
# FILES_AT holds what gpu_leg.sh returned: model-<name>.tar per model and logs.tar.gz (manifest-<DATA>.json).
# WORK gets exports/ (the three models and their manifest: replace_references.py's --exports),
# records/<DATA>/<name>/ (the tasks the rule reads), records-rest/ (every other task, only when the rule
# is met), logs/, cache/ and verdict.md.
# THREADS (default 1) per model process, three at once; MNIST_ROOT for MNIST (default ../shared/data/mnist).
# SMOKE=1: the mechanics only: evaluate_references.py --smoke (24 images, T = 10) of z_usage alone, whose
# records are of other task options, so the rule calls them incomparable and the script exits 1.
# Exit: 0 rule met and every task evaluated (the replace command is printed), 1 not met, 2 bad input.
set -u
cd "$(dirname "$0")/.."
DATA="${1:-}"; FILES_AT="${2:-}"; WORK="${3:-}"
PY="${PY:-.venv/bin/python}"
case "$DATA" in mnist|shapes) ;; *) echo "error: DATA must be mnist or shapes (usage: judge_leg.sh DATA FILES_AT WORK)" >&2; exit 2;; esac
[ -d "$FILES_AT" ] || { echo "error: FILES_AT '$FILES_AT' is not a folder" >&2; exit 2; }
[ -n "$WORK" ] || { echo "error: give WORK, a new folder for the exports, records and logs" >&2; exit 2; }
[ -e "$WORK/exports" ] && { echo "error: $WORK/exports exists already: use a new WORK folder" >&2; exit 2; }
NAMES="diffae-small-$DATA,ddim-small-$DATA,dmz-small-$DATA"
for n in ${NAMES//,/ }; do
  [ -f "$FILES_AT/model-$n.tar" ] || { echo "error: $FILES_AT/model-$n.tar is missing" >&2; exit 2; }
done
[ -f "$FILES_AT/logs.tar.gz" ] || { echo "error: $FILES_AT/logs.tar.gz (the leg's manifest) is missing" >&2; exit 2; }

mkdir -p "$WORK/exports" "$WORK/logs" "$WORK/unpacked"
for n in ${NAMES//,/ }; do tar xf "$FILES_AT/model-$n.tar" -C "$WORK/exports" || exit 2; done
tar xzf "$FILES_AT/logs.tar.gz" -C "$WORK/unpacked" || exit 2
cp "$WORK/unpacked/logs/manifest-$DATA.json" "$WORK/exports/manifest.json" || { echo "error: no manifest-$DATA.json in logs.tar.gz" >&2; exit 2; }

EVAL=("$PY" scripts/evaluate_references.py --models "$WORK/exports" --only "$NAMES" --threads "${THREADS:-1}"
      --logs "$WORK/logs" --cache-dir "$WORK/cache")
[ "$DATA" = mnist ] && EVAL+=(--mnist-root "${MNIST_ROOT:-../shared/data/mnist}")
[ "${SMOKE:-0}" = 1 ] && EVAL+=(--smoke)
NEEDED=$("$PY" scripts/replacement_rule.py --data "$DATA" --tasks-needed) || exit 2
[ "${SMOKE:-0}" = 1 ] && NEEDED=z_usage
echo "1/2: the tasks the rule reads ($NEEDED) on $NAMES, $(date -u +%T)"
"${EVAL[@]}" --tasks "$NEEDED" --out "$WORK/records" || { echo "evaluation failed: logs in $WORK/logs" >&2; exit 2; }
"$PY" scripts/replacement_rule.py --data "$DATA" "$WORK"/records/"$DATA"/* | tee "$WORK/verdict.md"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { echo "the rule is not met (exit $rc): the references stay; the verdict is $WORK/verdict.md"; exit "$rc"; }

REST=$("$PY" -c "from diffae_bench.harness.task import task_names
print(','.join(t for t in task_names() if t not in '$NEEDED'.split(',')))")
echo "2/2: the rule is met; every other task ($REST), $(date -u +%T)"
"${EVAL[@]}" --tasks "$REST" --out "$WORK/records-rest" || { echo "evaluation failed: logs in $WORK/logs" >&2; exit 2; }
echo "next: python scripts/replace_references.py --data $DATA --label <label> --exports $WORK/exports" \
     "--records $WORK/records/$DATA --records $WORK/records-rest/$DATA --archive results/legs/<page>/records/replaced-references"
