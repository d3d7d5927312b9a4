#!/usr/bin/env bash
# The whole GPU lease in one call (device tool, about 9 minutes): first the reference evaluation
# (scripts/gpu_eval.sh: every task on the six reference models -> records.tar.gz), then the speed
# measurement (scripts/gpu_perf.sh, issue 21 part 1) with what is left. Everything that comes back
# fits the tool's 8 files: records.tar.gz, perf-results.md, logs.tar.gz.
#   run: bash scripts/gpu_session.sh    carry: .whl .refdata    env: MNIST_ROOT=.refdata/mnist
set -u
cd "$(dirname "$0")/.."
FINAL="${OUT:-./gpu-out}"
mkdir -p "$FINAL"
EVAL_OUT=$(mktemp -d)
PERF_OUT=$(mktemp -d)
OUT="$EVAL_OUT" EVAL_TIMEOUT="${EVAL_TIMEOUT:-330}" bash scripts/gpu_eval.sh
echo "gpu_eval.sh exit $?"
[ -n "${PYTHONPATH_EXTRA:-}" ] && export PYTHONPATH="$PYTHONPATH_EXTRA"
[ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
OUT="$PERF_OUT" GPU_PERF_BUDGET_S="${PERF_BUDGET:-230}" bash scripts/gpu_perf.sh
echo "gpu_perf.sh exit $?"
mv "$EVAL_OUT/records.tar.gz" "$FINAL/" 2>/dev/null
cp "$PERF_OUT/results.md" "$FINAL/perf-results.md" 2>/dev/null
tar czf "$FINAL/logs.tar.gz" -C "$EVAL_OUT" . -C "$PERF_OUT" .
tail -n 60 "$PERF_OUT/results.md" 2>/dev/null
