#!/usr/bin/env bash
# The GPU checks of the engine in one command, sized for a short lease of a GPU machine:
#   1. the CUDA tests (cuDNN paths, the whole stack in one call, autocast, torch.func, CUDA
#      graphs), against the CPU reference and torch.nn, bit for bit where the call is torch.nn's;
#   2. gpu_graphs.py (the cells without a cuDNN kernel: graphs against the autograd loop and
#      cuDNN's LSTM), rnn_speed.py against cuDNN on the small grid (--quick), lengths_routes.py
#      (every route of the fused cells with lengths), then the full grid if time allows.
# Run from the repository root with a Python whose torch sees a CUDA device; rnnkit is taken
# from src/ (no install). Logs and tables go to $OUT (or ./gpu_check):
#   bash benchmarks/gpu_check.sh   # H200: tests 35 s, graphs 2 min, --quick 1.5 min, routes 20 s
set -u -o pipefail
out=${OUT:-gpu_check}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
budget=${GPU_CHECK_SECONDS:-480}  # for the benchmarks, after the tests
start=$(date +%s)

"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" 2>&1 | tee "$out/device.txt" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$out/device.txt" 2>&1

"$py" -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_engine_stack.py tests/test_engine_dispatch.py tests/test_engine_autocast.py \
    tests/test_engine_functorch.py tests/test_engine_graphs.py 2>&1 | tee "$out/tests.log"
tests_rc=$?

run() {  # run NAME ARGS...: the benchmark within what is left of the budget
    local name=$1 left
    shift
    left=$((budget - ($(date +%s) - start)))
    if [ "$left" -gt 30 ]; then
        timeout "$left" "$py" "$@" 2>&1 | tee "$out/$name.md"
    fi
}
run gpu_graphs benchmarks/gpu_graphs.py
run rnn_speed_cuda_quick benchmarks/rnn_speed.py --device cuda --quick
run lengths_routes_cuda benchmarks/lengths_routes.py --device cuda --repeats 5
if [ $((budget - ($(date +%s) - start))) -gt 200 ]; then
    run rnn_speed_cuda benchmarks/rnn_speed.py --device cuda --repeats 3
fi
exit $tests_rc
