#!/usr/bin/env bash
# One call on a lent GPU machine (the device tool): evaluate every task on the six committed
# reference models and return the records as one tarball, plus each process's log.
#   carry: .whl (torch-fidelity and lpips wheels: not in that machine's image), .refdata (MNIST's IDX files)
#   here, afterwards: tar xzf <files_at>/records.tar.gz && bench leaderboard results/records ...
set -uo pipefail
OUT=${OUT:-./gpu-out}
PY=${PY:-python3}
mkdir -p "$OUT"
. scripts/gpu_env.sh
gpu_wheels "$PY" || exit 3
gpu_checkout "$PY"
$PY -c "import torch, sklearn, scipy, pandas, typer, safetensors, tqdm, torch_fidelity, lpips, filelock, skimage; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 3
nvidia-smi -L 2>/dev/null
rm -rf results/records
start=$(date +%s)
timeout ${EVAL_TIMEOUT:-540} $PY scripts/evaluate_references.py --out results/records --threads 2 --logs "$OUT" \
  ${MNIST_ROOT:+--mnist-root $MNIST_ROOT} ${EVAL_ARGS:-}
rc=$?
echo "evaluation exit $rc after $(( $(date +%s) - start )) s"
tar czf "$OUT/records.tar.gz" results/records
exit $rc
