#!/usr/bin/env bash
# GPU check of numbanorm (issue 10, must-show 6): run on a machine with a CUDA GPU,
# from the repository root. About 8 minutes at most:
#   1. the simulator-free CUDA tests on the real device (correctness of the compiled
#      warp-shuffle reductions and every kernel family), 4 minutes at most;
#   2. `numbanorm bench` GPU rows (layer_norm, rms_norm), 1.5 minutes at most;
#   3. bench/gpu_check.py: per op time, fraction of a device-to-device copy, ratio to
#      torch.nn.functional on CUDA, at the shapes; 2.5 minutes at most.
# Output: gpu_check.out (and stdout).
set -u
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
{
  echo "## nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
  echo "## tests on the device"
  timeout 240 "$PY" -m pytest -q -x -m cuda -p no:cacheprovider \
    tests/test_cuda_rows.py tests/test_cuda_split.py tests/test_cuda_reduce.py tests/test_cuda.py 2>&1 | tail -15
  echo "## numbanorm bench (GPU rows)"
  timeout 90 "$PY" -m numbanorm bench layer_norm rms_norm --quick --no-torch --markdown 2>&1 | grep -i -E "gpu|^\||^#" | head -40
  echo "## gpu_check.py"
  timeout 150 "$PY" bench/gpu_check.py --reps 10 --budget 120 2>&1
} | tee gpu_check.out
