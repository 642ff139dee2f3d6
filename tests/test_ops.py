"""The custom ops (``taylorglo::hard_*``, ``soft_*``; csrc/) against the pure-PyTorch reference.

Parity per dtype, order, label kind and option; opcheck and gradcheck; every kernel layout of the CPU
build, every CPU capability, and every launch path of the CUDA build (csrc/cuda/launch.h). The
helpers here are shared with test_loss.py.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import taylorglo
from taylorglo import TaylorLoss, ops, parameter_count, taylor_loss, taylor_loss_reference

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = {  # (rtol, atol) of the loss and gradient vs the float64 reference, by logits dtype
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (4e-2, 4e-2),
}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_params(order, variables=("x", "y"), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    n = parameter_count(order, variables)
    v = torch.randn(n, generator=g, dtype=torch.float64) * scale
    v[-len(variables) :] = torch.rand(len(variables), generator=g, dtype=torch.float64)  # centers in [0, 1]
    return v


def make_inputs(shape, dtype, device, soft=False, ignore_frac=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(device=device, dtype=dtype)
    C = shape[1]
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1).to(
            device=device, dtype=dtype
        )
    else:
        tshape = (shape[0], *shape[2:])
        target = torch.randint(0, C, tshape, generator=g)
        if ignore_frac:
            target[torch.rand(tshape, generator=g) < ignore_frac] = -100
        target = target.to(device)
    return logits, target


def loss_and_grad(fn, logits, target, **kw):
    z = logits.detach().clone().requires_grad_(True)
    out = fn(z, target, **kw)
    (out.sum() if out.dim() else out).backward()
    return out.detach(), z.grad


def check_parity(logits, target, params, tol_dtype=None, **kw):
    out, grad = loss_and_grad(
        taylor_loss, logits, target, params=params.to(logits.device), backend="kernel", **kw
    )
    ref_target = target.double() if target.is_floating_point() else target
    ref_out, ref_grad = loss_and_grad(
        taylor_loss_reference, logits.double(), ref_target, params=params.to(logits.device), **kw
    )
    rtol, atol = TOL[tol_dtype or logits.dtype]
    scale = max(1.0, ref_out.abs().max().item()) if ref_out.numel() else 1.0
    assert out.dtype == logits.dtype and grad.dtype == logits.dtype
    torch.testing.assert_close(out.double(), ref_out, rtol=rtol, atol=atol * scale)
    gscale = max(1.0, ref_grad.abs().max().item()) if ref_grad.numel() else 1.0
    torch.testing.assert_close(grad.double(), ref_grad, rtol=rtol, atol=atol * gscale)


# ---------------------------------------------------------------------------------------------
# Parity with the reference (CPU, and CUDA where a GPU is present)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6, 7, 12])
@pytest.mark.parametrize(
    "shape", [(37, 5), (37, 13), (9, 203)], ids=["5-classes", "13-classes", "203-classes"]
)
def test_kernel_matches_reference_across_dtypes_orders_and_targets(device, dtype, soft, order, shape):
    # CPU: (N, C) inputs with few classes run transposed lane tiles (37 rows: a partial last tile),
    # forward and backward with 5 classes, forward only with 13; many classes run one row at a time
    # (203: a partial last vector). Orders 2-6 are compiled for their order, the others (7, 12 here)
    # run the generic loops.
    logits, target = make_inputs(
        shape, dtype, device, soft=soft, ignore_frac=0.0 if soft else 0.2, seed=order
    )
    check_parity(logits, target, random_params(order, seed=order), order=order)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "shape", [(5, 3, 7), (2, 4, 3, 5), (3, 21, 8, 8), (1, 1), (4, 1), (2, 1000), (3, 67), (6, 33, 1)]
)
@pytest.mark.parametrize("soft", [False, True])
def test_kernel_matches_reference_for_nd_and_odd_shapes(device, shape, soft):
    logits, target = make_inputs(shape, torch.float32, device, soft=soft, ignore_frac=0.1, seed=len(shape))
    for reduction in ("none", "mean", "sum"):
        check_parity(logits, target, random_params(3, seed=1), reduction=reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("order", [1, 3, 6])
def test_nd_kernels_match_reference_in_every_dtype(device, dtype, soft, order):
    # N-d inputs run lane-parallel kernels (neighbouring positions in vector lanes); partial tiles too.
    for shape in ((3, 21, 5, 7), (2, 4, 33), (1, 2, 1)):
        logits, target = make_inputs(
            shape, dtype, device, soft=soft, ignore_frac=0.0 if soft else 0.2, seed=order
        )
        check_parity(logits, target, random_params(order, seed=order), order=order, label_smoothing=0.1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_reference(device, soft, smoothing):
    logits, target = make_inputs(
        (16, 10), torch.float64, device, soft=soft, ignore_frac=0.0 if soft else 0.25, seed=3
    )
    check_parity(logits, target, random_params(4, seed=7), label_smoothing=smoothing)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("soft", [False, True])
def test_time_varying_loss_matches_reference(device, soft):
    variables = ("x", "y", "t")
    params = random_params(3, variables, seed=5)
    logits, target = make_inputs((12, 7), torch.float64, device, soft=soft, seed=4)
    for t in (0.0, 0.3, 1.0):
        check_parity(logits, target, params, variables=variables, progress=t)


@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_ignore_index_positions_have_zero_loss_and_gradient(ignore_index):
    logits, target = make_inputs((20, 6), torch.float64, "cpu", seed=9)
    target[::3] = ignore_index
    params = random_params(3, seed=2)
    out, grad = loss_and_grad(
        taylor_loss, logits, target, params=params, reduction="none", ignore_index=ignore_index
    )
    ignored = target == ignore_index
    assert torch.all(out[ignored] == 0) and torch.all(grad[ignored] == 0)
    check_parity(logits, target, params, ignore_index=ignore_index)
    mean = taylor_loss(logits, target, params, ignore_index=ignore_index)
    torch.testing.assert_close(mean, out[~ignored].mean())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 9),
    c=st.integers(1, 40),
    spatial=st.lists(st.integers(1, 4), max_size=2),
    order=st.integers(1, 6),
    soft=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.05, 0.3]),
    scale=st.floats(0.1, 20.0),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference_on_random_cases(n, c, spatial, order, soft, smoothing, scale, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c, *spatial)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
    else:
        target = torch.randint(-1, c, (n, *spatial), generator=g)
    check_parity(logits, target, random_params(order, seed=seed), label_smoothing=smoothing, ignore_index=-1)


def test_non_contiguous_inputs_are_handled():
    base = torch.randn(10, 8, dtype=torch.float64)
    logits = base[:, ::2]  # (10, 4) strided
    assert not logits.is_contiguous()
    target = torch.randint(0, 4, (20,))[::2]
    check_parity(logits, target, random_params(3, seed=0))


def test_empty_batch_gives_zero_loss_and_empty_gradient():
    logits = torch.randn(0, 5, requires_grad=True)
    for reduction, expected_shape in (("mean", ()), ("sum", ()), ("none", (0,))):
        out = taylor_loss(logits, torch.zeros(0, dtype=torch.long), WORKED, reduction=reduction)
        assert out.shape == expected_shape
        if reduction != "none":
            assert out.item() == 0.0
            (g,) = torch.autograd.grad(out, logits)
            assert g.shape == (0, 5)


def test_all_ignored_batch_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    out = taylor_loss(logits, torch.full((3,), -100), WORKED)
    assert out.item() == 0.0
    (g,) = torch.autograd.grad(out, logits)
    assert torch.all(g == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(4, 3), (4, 200), (4, 3, 5)], ids=["few-classes", "many-classes", "n-d"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nan_and_inf_logits_give_nan_loss_and_gradient_in_their_rows_only(device, shape, soft, dtype):
    logits, target = make_inputs(shape, dtype, device, soft=soft)
    logits[0, 1] = float("-inf")  # a masked class: the row stays finite
    logits[1, -3] = float("nan")  # (CUDA: one lane holds only the NaN, its neighbour only the target)
    if not soft:
        target[1] = 1
    logits[2, 1] = float("inf")
    logits[3, :] = float("-inf")  # no finite logit at all
    z = logits.clone().requires_grad_(True)
    out = taylor_loss(z, target, WORKED, reduction="none", backend="kernel")
    out.sum().backward()
    bad = torch.tensor([False, True, True, True], device=device)
    assert torch.isnan(out[bad]).all() and torch.isfinite(out[~bad]).all()
    assert torch.isnan(z.grad[bad]).all() and torch.isfinite(z.grad[~bad]).all()


@pytest.mark.parametrize("bad", [3, -1, 100])
def test_out_of_range_labels_raise_inside_the_op(bad):
    logits, target = torch.randn(5, 3), torch.tensor([0, 1, bad, 2, 0])
    with pytest.raises(RuntimeError, match=f"target {bad} at position 2 is out of range for 3 classes"):
        taylor_loss(logits, target, WORKED)
    with pytest.raises(ValueError, match=f"target {bad} at flat position 2 is out of range"):
        taylor_loss(logits, target, WORKED, validate=True)


def test_out_of_range_labels_raise_under_torch_compile():
    torch._dynamo.reset()
    loss = TaylorLoss(WORKED)
    fn = torch.compile(lambda z, t: loss(z, t), fullgraph=True)
    fn(torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 0]))
    with pytest.raises(Exception, match="out of range for 3 classes"):
        fn(torch.randn(5, 3), torch.tensor([0, 1, 7, 2, 0]))


# ---------------------------------------------------------------------------------------------
# Gradients and opcheck


def test_gradcheck_wrt_logits_and_params_hard_and_soft():
    g = torch.Generator().manual_seed(0)
    for soft, variables in itertools.product([False, True], [("x", "y"), ("x", "y", "t")]):
        params = random_params(3, variables, seed=3).requires_grad_(True)
        logits = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
        target = (
            torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), 1)
            if soft
            else torch.tensor([0, 4, 2, -100, 1, 3])
        )
        progress = torch.tensor(0.4, dtype=torch.float64, requires_grad=True) if len(variables) == 3 else None

        def fn(z, p, t=progress, target=target, variables=variables):
            return taylor_loss(
                z, target, p, variables=variables, progress=t, label_smoothing=0.1, backend="kernel"
            )

        assert torch.autograd.gradcheck(fn, (logits, params))
        if progress is not None:
            assert torch.autograd.gradcheck(functools.partial(fn, logits, params), (progress,))


def test_gradcheck_nd_input():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (2, 3), generator=g)
    params = random_params(4, seed=1)
    assert torch.autograd.gradcheck(lambda z: taylor_loss(z, target, params, reduction="none"), (logits,))


def test_params_gradient_matches_reference_gradient():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(30, 8, generator=g, dtype=torch.float64)
    target = torch.randint(0, 8, (30,), generator=g)
    for fn in (taylor_loss, taylor_loss_reference):
        p = random_params(5, seed=4).requires_grad_(True)
        out = fn(logits, target, p, label_smoothing=0.2)
        grads = torch.autograd.grad(out, p)[0]
        if fn is taylor_loss:
            kernel_grads = grads
    torch.testing.assert_close(kernel_grads, grads)


def _sample_args(soft):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, 3, generator=g)
    if soft:
        target = torch.softmax(torch.randn(7, 5, 3, generator=g), 1)
        coef = torch.randn(4, 4, generator=g).fliplr().triu().fliplr()  # total degree <= 3
        return logits, target, coef
    target = torch.randint(0, 5, (7, 3), generator=g)
    target[0, 0] = -100
    coef = torch.randn(2, 4, generator=g)
    return logits, target, coef


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_opcheck_reduced_loss_ops(soft, reduction):
    logits, target, coef = _sample_args(soft)
    logits.requires_grad_(True)
    if soft:
        torch.library.opcheck(torch.ops.taylorglo.soft_loss.default, (logits, target, coef, reduction))
    else:
        torch.library.opcheck(torch.ops.taylorglo.hard_loss.default, (logits, target, coef, -100, reduction))


def test_reduced_loss_op_rejects_an_unknown_reduction():
    logits, target, coef = _sample_args(False)
    with pytest.raises(
        RuntimeError, match="reduction must be 0 \\(none\\), 1 \\(mean\\) or 2 \\(sum\\), got 3"
    ):
        torch.ops.taylorglo.hard_loss(logits, target, coef, -100, 3)


@pytest.mark.parametrize("soft", [False, True])
def test_opcheck_forward_and_backward_ops(soft):
    logits, target, coef = _sample_args(soft)
    if soft:
        torch.library.opcheck(
            torch.ops.taylorglo.soft_forward.default, (logits.requires_grad_(True), target, coef)
        )
        _, stats = torch.ops.taylorglo.soft_forward(logits, target, coef)
        grad = torch.randn(7, 3)
        torch.library.opcheck(
            torch.ops.taylorglo.soft_backward.default, (grad, logits.detach(), target, coef, stats)
        )
    else:
        torch.library.opcheck(
            torch.ops.taylorglo.hard_forward.default, (logits.requires_grad_(True), target, coef, -100)
        )
        _, stats = torch.ops.taylorglo.hard_forward(logits, target, coef, -100)
        grad = torch.randn(7, 3)
        torch.library.opcheck(
            torch.ops.taylorglo.hard_backward.default, (grad, logits.detach(), target, coef, stats, -100)
        )


# ---------------------------------------------------------------------------------------------
# The CPU build: the fused op runs, and every capability (default, AVX2, AVX-512) is right


def test_compiled_kernel_runs_on_cpu_not_the_reference(monkeypatch):
    assert ops.EXTENSION_ERROR is None, ops.EXTENSION_ERROR
    assert "cpu" in ops.kernel_devices()

    def forbidden(*args, **kwargs):
        raise AssertionError("fell back to the reference implementation")

    monkeypatch.setattr(taylorglo.loss, "taylor_loss_reference", forbidden)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = TaylorLoss(WORKED)(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert torch.isfinite(out)
    # The fused op and its fused backward run (recorded by the profiler as the dispatcher calls them).
    z = torch.randn(4, 3, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        TaylorLoss(WORKED, reduction="none")(z, torch.tensor([0, 1, 2, 0])).sum().backward()
    called = {e.name for e in prof.events()}
    assert {"taylorglo::hard_loss", "taylorglo::hard_forward", "taylorglo::hard_backward"} <= called, called
    assert z.grad is not None and torch.isfinite(z.grad).all()


# Every CPU capability runs in a subprocess of its own (TAYLORGLO_CPU_CAPABILITY caps the choice made
# at load time), over every layout of the kernels (rows, transposed tiles, strided N-d tiles), both label
# kinds, a compile-time order (3) and a run-time one (8), in float64, float32 and bfloat16. It prints the
# capability it got, each case's largest error against the float64 reference (loss, then gradient,
# relative to the largest reference value), and the case's values for the comparison across builds.
CAPABILITY_SCRIPT = r"""
import json, torch, taylorglo
from taylorglo import taylor_loss, taylor_loss_reference
out = {"capability": torch.ops.taylorglo.cpu_capability(), "errors": {}, "values": {}}
g = torch.Generator().manual_seed(0)
for shape, soft, order, dtype in [
    ((33, 1000), False, 8, torch.float32), ((33, 1000), True, 3, torch.float32),
    ((33, 1000), False, 3, torch.float64), ((65, 7), False, 3, torch.float32),
    ((65, 7), True, 8, torch.float32), ((65, 5), False, 3, torch.bfloat16),
    ((3, 21, 5, 7), False, 3, torch.bfloat16), ((3, 21, 5, 7), True, 8, torch.float64),
]:
    z = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t = (torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1) if soft
         else torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g))
    n = {3: 8, 8: 38}[order]
    params = torch.randn(n, generator=g, dtype=torch.float64)
    params[-2:] = torch.rand(2, generator=g, dtype=torch.float64)
    res = []
    z, t = z.to(dtype), t.to(dtype) if soft else t  # the reference sees the same rounded inputs
    for fn, zz, tt in ((taylor_loss, z, t), (taylor_loss_reference, z.double(), t.double() if soft else t)):
        zz = zz.clone().requires_grad_(True)
        loss = fn(zz, tt, params, reduction="none", label_smoothing=0.1)
        loss.sum().backward()
        res.append((loss.detach().double(), zz.grad.double()))
    (l, gr), (l64, g64) = res
    key = f"{'soft' if soft else 'hard'} {tuple(shape)} order {order} {str(dtype)[6:]}"
    out["errors"][key] = [((l - l64).abs().max() / l64.abs().max()).item(),
                          ((gr - g64).abs().max() / g64.abs().max()).item()]
    out["values"][key] = [l.sum().item(), gr.sum().item(), gr.abs().sum().item()]
print(json.dumps(out))
"""
CAPABILITY_TOL = {"float64": 1e-11, "float32": 1e-4, "bfloat16": 1e-2}  # seen: 3e-13, 3e-5, 4e-3


@functools.cache
def capability_run(capability: str) -> dict:
    env = {**os.environ, "TAYLORGLO_CPU_CAPABILITY": capability}
    r = subprocess.run(
        [sys.executable, "-c", CAPABILITY_SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def capability_or_skip(capability: str) -> dict:
    run = capability_run(capability)
    if run["capability"] != capability:
        pytest.skip(f"this CPU cannot run the {capability} build (the extension chose {run['capability']})")
    return run


@pytest.mark.slow  # a subprocess per capability
@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_each_cpu_capability_matches_the_reference(capability):
    # In-process tests run the best build this CPU has; the others are checked here.
    run = capability_or_skip(capability)
    for case, errors in run["errors"].items():
        tol = CAPABILITY_TOL[case.rsplit(" ", 1)[1]]
        assert max(errors) <= tol, (capability, case, errors)


@pytest.mark.parametrize("capability", ["avx2", "avx512"])
def test_vectorized_capabilities_agree_with_the_portable_build(capability):
    run, base = capability_or_skip(capability), capability_run("default")
    assert base["capability"] == "default"
    for case, values in run["values"].items():
        tol = 1e-12 if case.endswith("float64") else 1e-5
        for a, b in zip(values, base["values"][case]):
            assert abs(a - b) <= tol * max(1.0, abs(b)), (capability, case, values, base["values"][case])


# ---------------------------------------------------------------------------------------------
# The CUDA build: every launch path of csrc/cuda/launch.h, named and reached

# The launch table of the CUDA kernels (kLaunchTable in csrc/cuda/launch.h): each path with shapes
# that reach it, chosen from the table's limits. Warp per row: (N, C) with C <= WARP_MAX_CLASSES,
# including C = 1, C below a warp, and C at the limit. Block per row: C just past the limit, and C not
# a multiple of the block. Thread per row: N-d inputs, also with more classes than the limit. A
# trailing dimension of 1 is no N-d input: it takes the (N, C) path.
WARP_MAX_CLASSES = 2048
CUDA_PATHS = {
    "warp-per-row": [(37, 1), (37, 5), (9, 203), (6, 33, 1), (5, WARP_MAX_CLASSES)],
    "block-per-row": [(5, WARP_MAX_CLASSES + 1), (3, 5000)],
    "thread-per-row": [(3, 21, 5, 7), (2, 4, 33), (2, WARP_MAX_CLASSES + 50, 3)],
}
cuda_build = pytest.mark.skipif(
    "cuda" not in ops.kernel_devices(), reason="this build has no CUDA kernels (build with TAYLORGLO_CUDA=1)"
)


def rows_classes_inner(shape):
    inner = 1
    for d in shape[2:]:
        inner *= d
    return shape[0] * inner, shape[1], inner


@cuda_build
def test_cuda_paths_are_the_launch_table():
    # Runs on a CUDA build without a GPU too: the launch geometry is host code.
    assert set(torch.ops.taylorglo.cuda_launch_paths()) == set(CUDA_PATHS)  # every path, and tested
    for path, shapes in CUDA_PATHS.items():
        for shape in shapes:
            got, group, threads = torch.ops.taylorglo.cuda_launch_shape(*rows_classes_inner(shape))
            assert got == path, (shape, got)
            assert threads % group == 0


@needs_cuda
def test_cuda_kernel_is_used_and_matches_cpu():
    assert "cuda" in ops.kernel_devices()
    logits, target = make_inputs((64, 1000), torch.float32, "cpu", seed=1)
    cpu = loss_and_grad(taylor_loss, logits, target, params=torch.tensor(WORKED), backend="kernel")
    gpu = loss_and_grad(
        taylor_loss, logits.cuda(), target.cuda(), params=torch.tensor(WORKED).cuda(), backend="kernel"
    )
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=1e-5, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("path", list(CUDA_PATHS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("order", [3, 8], ids=["order-3", "order-8"])  # the kernels' KMAX 6 and 12
def test_every_cuda_launch_path_matches_the_reference(path, dtype, soft, order):
    for i, shape in enumerate(CUDA_PATHS[path]):
        logits, target = make_inputs(
            shape, dtype, "cuda", soft=soft, ignore_frac=0.0 if soft else 0.2, seed=i
        )
        params = random_params(order, seed=order)
        check_parity(logits, target, params, order=order, label_smoothing=0.1)
        check_parity(logits, target, params, order=order, reduction="none")


@needs_cuda
@pytest.mark.parametrize("path", list(CUDA_PATHS))
def test_every_cuda_launch_path_agrees_with_the_cpu_kernel(path):
    for i, shape in enumerate(CUDA_PATHS[path]):
        for soft in (False, True):
            logits, target = make_inputs(shape, torch.float32, "cpu", soft=soft, ignore_frac=0.1, seed=i)
            params = torch.tensor(WORKED)
            cpu = loss_and_grad(
                taylor_loss, logits, target, params=params, backend="kernel", reduction="none"
            )
            gpu = loss_and_grad(
                taylor_loss,
                logits.cuda(),
                target.cuda(),
                params=params.cuda(),
                backend="kernel",
                reduction="none",
            )
            torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Precision when the logits share a large offset (softmax is shift-invariant; the kernels must be too)

OFFSETS = [0.0, 1e3, 1e4, 3e4]
PRECISION_DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
# The layouts of the kernels: many classes one row at a time, few classes in transposed lane tiles,
# N-d inputs in strided lane tiles (CUDA: a warp per row, a block per row for more than 2048 classes,
# a thread per row).
LAYOUTS = {"rows": (64, 1000), "many-classes": (8, 3000), "few-classes": (256, 5), "n-d": (4, 21, 8, 8)}
# Largest relative gradient error, max |g - g64| / max |g64|. float32: what the polynomial's float32
# evaluation costs at any offset (~1e-6 for WORKED; F.cross_entropy's is ~3e-7), where a saved
# float32 log-sum-exp made it 7e-5 at offset 1e3 and 2e-3 at 3e4. 16-bit: twice the unit roundoff
# of the dtype (2^-8 for bfloat16, 2^-11 for float16): the gradient rounded to it once, plus the
# float32 computation (where a row is nearly one-hot, as float16 logits near 3e4 make it, the
# reference's own float32 path is off by 1.3 unit roundoffs too).
GRADIENT_BOUND = {torch.float32: 5e-6, torch.bfloat16: 2 * 2**-8, torch.float16: 2 * 2**-11}
# float16 with 3000 classes is left out: near offset 3e4 (where float16's spacing is 16) a row has ~10
# logits tied at its max, and even summed its gradients lie below float16's normal range (max |g| 3e-5
# < 6.1e-5), where the subnormals' absolute spacing 6e-8, not the one rounding, sets the error.
SIXTEEN_BIT_CASES = [
    pytest.param(dtype, layout, id=f"{name}-{layout}")
    for dtype, name in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16"))
    for layout in LAYOUTS
    if (name, layout) != ("float16", "many-classes")
]


def offset_case(shape, dtype, device, offset, soft, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (offset + 3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1).to(dtype)
    else:
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits.to(device), target.to(device)


def relative_gradient_error(logits, target, reduction="mean"):
    """The kernel's gradient against the float64 reference on the same (rounded) logits."""
    params = torch.tensor(WORKED, dtype=torch.float64, device=logits.device)
    _, grad = loss_and_grad(taylor_loss, logits, target, params=params, backend="kernel", reduction=reduction)
    target64 = target.double() if target.is_floating_point() else target
    _, oracle = loss_and_grad(
        taylor_loss_reference, logits.double(), target64, params=params, reduction=reduction
    )
    return ((grad.double() - oracle).abs().max() / oracle.abs().max()).item()


@pytest.mark.parametrize("device", PRECISION_DEVICES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_float32_gradient_stays_exact_when_logits_share_a_large_offset(device, layout, soft, offset):
    logits, target = offset_case(LAYOUTS[layout], torch.float32, device, offset, soft)
    assert relative_gradient_error(logits, target) <= GRADIENT_BOUND[torch.float32]


@pytest.mark.parametrize("device", PRECISION_DEVICES)
@pytest.mark.parametrize("dtype, layout", SIXTEEN_BIT_CASES)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_16bit_gradient_is_rounded_only_once_at_every_offset(device, dtype, layout, soft):
    # The sum keeps the gradients far from the 16-bit subnormals, whose absolute spacing would
    # dominate the error of a mean over many positions.
    for offset in OFFSETS:
        logits, target = offset_case(LAYOUTS[layout], dtype, device, offset, soft)
        err = relative_gradient_error(logits, target, reduction="sum")
        assert err <= GRADIENT_BOUND[dtype], (offset, err)


@pytest.mark.parametrize("device", PRECISION_DEVICES)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_params_gradient_stays_exact_when_logits_share_a_large_offset(device, soft):
    logits, target = offset_case((64, 100), torch.float32, device, 3e4, soft)
    if not soft:
        target[::7] = -100
    grads = []
    for fn, z, tgt in (
        (functools.partial(taylor_loss, backend="kernel"), logits, target),
        (taylor_loss_reference, logits.double(), target.double() if soft else target),
    ):
        params = torch.tensor(WORKED, dtype=torch.float64, device=device, requires_grad=True)
        fn(z, tgt, params).backward()
        grads.append(params.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5 * grads[1].abs().max().item())


def test_params_gradient_is_finite_with_ignored_rows_of_large_logits():
    # Ignored rows have zero statistics; their probabilities must not be formed from exp(z) alone.
    logits = torch.randn(4, 6) + torch.tensor([[0.0], [200.0], [0.0], [0.0]])
    target = torch.tensor([0, -100, 2, 3])
    params = torch.tensor(WORKED, dtype=torch.float64, requires_grad=True)
    taylor_loss(logits, target, params, backend="kernel").backward()
    assert torch.isfinite(params.grad).all()
