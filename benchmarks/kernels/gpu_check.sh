#!/usr/bin/env bash
# One-shot check on a GPU machine (issue 3): build the extension with its CUDA kernels, run the
# kernel tests (CUDA cases first), then the CUDA benchmark table in quick mode. About 8 minutes at
# most: every step has a time limit taken from one overall deadline, and every step's output is
# saved under $OUT as it goes, so a step that runs out of time still leaves what it printed.
#
#   bash benchmarks/kernels/gpu_check.sh                # from the repository root
#   OUT=/tmp/out DEADLINE=420 bash benchmarks/kernels/gpu_check.sh
#
# Environment:
#   OUT        where logs and results go (default: ./gpu-check-out)
#   WHEELS     folder of wheels to install first without an index, e.g. packages the machine's
#              image lacks (default: .whl; skipped when absent or empty)
#   PYTHON     the interpreter that holds torch (default: python3)
#   DEADLINE   seconds for the whole script (default: 450)
#   TORCH_CUDA_ARCH_LIST  defaults to the visible GPU's architecture (e.g. 9.0 on H100/H200)
#
# Results: $OUT/gpu_check.log (everything), $OUT/build.log, $OUT/tests-cuda.log, $OUT/tests.log,
# $OUT/results-cuda-core.md (TaylorLoss vs F.cross_entropy, every quick shape), $OUT/results-cuda.md
# and .json (all contenders, as far as the time allows).

set -u -o pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
DEADLINE=${DEADLINE:-450}
OUT=${OUT:-$PWD/gpu-check-out}
WHEELS=${WHEELS:-.whl}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

left() { echo $((DEADLINE - ($(date +%s) - START))); }
# limit CAP RESERVE: seconds a step may take: at most CAP, leaving RESERVE for the steps after it.
limit() {
    local l=$(($(left) - $2))
    ((l > $1)) && l=$1
    ((l < 10)) && l=10
    echo "$l"
}
step() { echo; echo "=== $* ($(($(date +%s) - START)) s elapsed, $(left) s left)"; }
STATUS=0

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv || true
$PYTHON -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
           "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'

if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    step "wheels from $WHEELS"
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || STATUS=1
fi

if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST=$($PYTHON -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null) \
        && export TORCH_CUDA_ARCH_LIST
fi

step "build (pip install --no-build-isolation -e ., TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-default})"
timeout "$(limit 240 200)" $PYTHON -m pip install --no-build-isolation --no-deps --no-index -v -e . \
    >"$OUT/build.log" 2>&1
rc=$?
tail -n 15 "$OUT/build.log"
if [ $rc -ne 0 ]; then
    echo "pip install failed (rc $rc); trying python setup.py build_ext --inplace"
    timeout "$(limit 240 180)" $PYTHON setup.py build_ext --inplace >>"$OUT/build.log" 2>&1 || STATUS=1
    tail -n 15 "$OUT/build.log"
fi
$PYTHON -c 'import taylorglo, torch; from taylorglo import ops
print("kernels:", ops.kernel_devices(), "|", ops.EXTENSION_ERROR or "extension loaded")
assert "cuda" in ops.kernel_devices(), "the extension has no CUDA kernels"' || STATUS=1

# The CUDA cases: every launch path of csrc/cuda/launch.h (warp per row, block per row, thread per
# row) in every dtype, hard and soft, both compiled order bounds; the precision and NaN cases.
step "tests: CUDA cases of tests/test_ops.py"
timeout "$(limit 90 170)" $PYTHON -m pytest tests/test_ops.py -k cuda -q -rs -p no:cacheprovider \
    2>&1 | tee "$OUT/tests-cuda.log" || STATUS=1

step "tests: the rest of the kernel tests (CPU and device-parametrized cases)"
timeout "$(limit 120 150)" $PYTHON -m pytest tests/test_ops.py tests/test_loss.py tests/test_reference.py \
    tests/test_loss_errors.py -k "not cuda" -q -rs -p no:cacheprovider -x 2>&1 | tee "$OUT/tests.log" || STATUS=1

step "benchmark: TaylorLoss vs F.cross_entropy on CUDA (quick)"
timeout "$(limit 60 80)" $PYTHON benchmarks/kernels/loss_table.py --device cuda --quick \
    --contenders cross_entropy taylorloss --out "$OUT/results-cuda-core.md" --json "$OUT/results-cuda-core.json" \
    || STATUS=1

step "benchmark: all contenders on CUDA (quick; stops starting groups when time runs short)"
T=$(limit 240 10)
timeout "$T" $PYTHON benchmarks/kernels/loss_table.py --device cuda --quick --budget $((T - 60)) \
    --out "$OUT/results-cuda.md" --json "$OUT/results-cuda.json" || STATUS=1

step "done: status $STATUS"
exit $STATUS
