"""pytest-benchmark cases: forward+backward of TaylorLoss, F.cross_entropy, the eager reference and
torch.compile of the reference, by shape, dtype, target kind and order (see ``common.py``).

    pytest benchmarks/kernels/test_bench_loss.py --benchmark-only                      # CPU, shapes <= 16M elements
    pytest benchmarks/kernels/test_bench_loss.py --benchmark-only -k cuda              # CUDA (skipped without a GPU)
    pytest benchmarks/kernels/test_bench_loss.py --benchmark-only --bench-large --benchmark-json out.json

Each benchmark group is one case, so pytest-benchmark's table puts the four contenders side by
side. For ratios to F.cross_entropy measured in interleaved rounds, and peak memory, use
``loss_table.py``. These are measurements, never timing assertions.
"""

from __future__ import annotations

import time

import common
import pytest
import torch
from common import CONTENDERS, DTYPES, ORDERS, SHAPES, TARGETS, Case

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]
# The eager reference keeps ~14 (order 3) to ~41 (order 6) N x C float32 buffers alive for backward.
REFERENCE_MAX_NUMEL = {"cpu": 1 << 23, "cuda": 1 << 26}
COMPILED_MAX_NUMEL = {"cpu": 1 << 24, "cuda": 1 << 30}
TIME_PER_CASE = 2.0  # seconds of timed rounds per benchmark


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=common.shape_id)
@pytest.mark.parametrize("contender", CONTENDERS)
def test_forward_backward(benchmark, contender, shape, dtype, target, order, device):
    case = Case(shape, dtype, target, device)
    if contender == "reference" and case.numel > REFERENCE_MAX_NUMEL[device]:
        pytest.skip(f"eager reference on {case.numel} elements: too slow or too much memory on {device}")
    if contender == "compiled" and case.numel > COMPILED_MAX_NUMEL[device]:
        pytest.skip(f"compiled reference on {case.numel} elements: too slow on {device}")
    benchmark.group = f"{device} {case.label()} {dtype} {target} order {order}"
    benchmark.extra_info.update(
        {"contender": contender, "shape": list(shape), "dtype": dtype, "target": target, "order": order}
    )
    logits, tgt = common.make_inputs(case)
    fn = common.make_contender(contender, order, device)

    def step():
        common.forward_backward(fn, logits, tgt)
        common.synchronize(device)

    step()  # compiles (torch.compile) and warms up
    t0 = time.perf_counter()
    step()
    per_call = time.perf_counter() - t0
    rounds = int(min(200, max(3, TIME_PER_CASE // max(per_call, 1e-6))))
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info["floor_bytes"] = case.floor_bytes
