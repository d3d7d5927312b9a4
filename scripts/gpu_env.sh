# Sourced by the scripts that run on a lent GPU machine (scripts/gpu_eval.sh, gpu_retrain.sh, gpu_leg.sh):
# that machine has torch but neither this checkout installed nor torch-fidelity and lpips.

# gpu_wheels PY: install the carried wheels (.whl/) into /tmp/site and put it on PYTHONPATH; 1 if pip fails.
gpu_wheels() {
  ls .whl/*.whl >/dev/null 2>&1 || return 0
  "$1" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || return 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
}

# gpu_checkout PY: import diffae_bench from this checkout; where it is not installed, lay tasks/ and
# baselines/ where the installed package has them (an installed checkout, e.g. a smoke run here, is left alone).
gpu_checkout() {
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$1" -c "import diffae_bench.tasks" 2>/dev/null; then
    cp -r tasks diffae_bench/tasks && cp -r baselines diffae_bench/baselines
  fi
}
