"""TaylorLoss and its compiled kernels against the pure-PyTorch reference (taylorglo.reference)."""

from __future__ import annotations

import functools
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import taylorglo
from taylorglo import TaylorLoss, TaylorPolynomial, ops, parameter_count, taylor_loss, taylor_loss_reference

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = {  # (rtol, atol) of the loss and gradient vs the float64 reference, by logits dtype
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (4e-2, 4e-2),
}


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
# Parity with the reference


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


# ---------------------------------------------------------------------------------------------
# Known values


def test_worked_example_reproduces_reference_numbers():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    per_row = TaylorLoss(WORKED, reduction="none")(logits, target)
    torch.testing.assert_close(per_row, torch.tensor([15.2385, 15.3507]), atol=1e-4, rtol=0)
    assert abs(TaylorLoss(WORKED)(logits, target).item() - 15.2946) < 1e-4
    p = torch.softmax(logits[0], 0)
    torch.testing.assert_close(p, torch.tensor([0.7856, 0.1753, 0.0391]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("order", [2, 3, 4, 5, 6])
def test_cross_entropy_approximation_tracks_cross_entropy_near_its_center(order):
    # Two classes with p around 0.5: the expansion of x log y around (0.5, 0.5) is accurate there.
    g = torch.Generator().manual_seed(order)
    logits = (torch.randn(64, 2, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    target = torch.randint(0, 2, (64,), generator=g)
    loss = TaylorLoss.cross_entropy_approximation(order)
    ce = F.cross_entropy(logits, target, reduction="none")
    approx = loss.__class__(loss.params, reduction="none")(logits, target)
    # The polynomial drops constants: compare after removing the constant sum_c x_c log(b) terms.
    diff = approx - ce
    assert diff.std().item() < 0.02 * (0.7 ** (order - 2))
    g_ce = torch.autograd.grad(ce.sum(), logits)[0]
    g_t = torch.autograd.grad(approx.sum(), logits)[0]
    cos = F.cosine_similarity(g_ce.flatten(), g_t.flatten(), dim=0)
    assert cos > 0.99


def test_cross_entropy_approximation_gradient_points_like_cross_entropy_on_many_classes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(128, 10, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 10, (128,), generator=g)
    g_ce = torch.autograd.grad(F.cross_entropy(logits, target), logits)[0]
    g_t = torch.autograd.grad(TaylorLoss.cross_entropy_approximation(3)(logits, target), logits)[0]
    # the true-class logit is pushed up by both, row by row
    rows = torch.arange(128)
    assert torch.all(g_t[rows, target] < 0) and torch.all(g_ce[rows, target] < 0)


# ---------------------------------------------------------------------------------------------
# Gradients, opcheck, compile


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


def test_torch_compile_fullgraph_does_not_recompile_when_params_or_progress_change():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(16, 10))
    loss_fn = TaylorLoss(random_params(3, ("x", "y", "t"), seed=1), variables=("x", "y", "t"))
    counts = {"n": 0}

    def backend(gm, example_inputs):
        counts["n"] += 1
        return gm.forward

    def step(x, y):
        return loss_fn(model(x), y)

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    x, y = torch.randn(32, 16), torch.randint(0, 10, (32,))
    eager_values, compiled_values = [], []
    for i in range(4):
        loss_fn.set_progress(i / 3)
        with torch.no_grad():
            loss_fn.params.add_(0.1)
        compiled_values.append(compiled(x, y))
        eager_values.append(step(x, y))
        compiled_values[-1].backward()
    assert counts["n"] == 1
    torch.testing.assert_close(torch.stack(compiled_values).detach(), torch.stack(eager_values).detach())


def test_torch_compile_inductor_matches_eager():
    torch._dynamo.reset()
    loss_fn = TaylorLoss.cross_entropy_approximation(3)
    logits = torch.randn(64, 10, requires_grad=True)
    target = torch.randint(0, 10, (64,))
    compiled = torch.compile(loss_fn, fullgraph=True)
    out = compiled(logits, target)
    (g,) = torch.autograd.grad(out, logits)
    (g_eager,) = torch.autograd.grad(loss_fn(logits, target), logits)
    torch.testing.assert_close(g, g_eager)


@pytest.mark.parametrize("soft", [False, True])
def test_torch_compile_dynamic_shapes_with_trainable_params_matches_eager(soft):
    # Batch size and class count change between calls (dynamic shapes), the loss parameters are
    # trained: the reduced-loss op's autograd (logits and params) is traced symbolically.
    torch._dynamo.reset()
    params = random_params(3, seed=5).float().requires_grad_(True)

    def fn(logits, target):
        return taylor_loss(logits, target, params, reduction="mean")

    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend="aot_eager")
    for shape in ((8, 5), (13, 7), (6, 5, 3)):
        logits, target = make_inputs(shape, torch.float32, "cpu", soft=soft, ignore_frac=0.0 if soft else 0.2)
        z = logits.clone().requires_grad_(True)
        got = torch.autograd.grad(compiled(z, target), (z, params))
        want = torch.autograd.grad(fn(z, target), (z, params))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# Module behaviour


def test_module_params_is_a_buffer_saved_and_moved():
    loss = TaylorLoss(WORKED)
    assert "params" in dict(loss.named_buffers())
    state = loss.state_dict()
    other = TaylorLoss([0.0] * 8)
    other.load_state_dict(state)
    torch.testing.assert_close(other.params, loss.params)
    assert loss.to(torch.float32).params.dtype == torch.float32


def test_module_sees_in_place_and_replaced_params_and_progress():
    logits, target = torch.randn(16, 5), torch.randint(0, 5, (16,))
    loss = TaylorLoss(WORKED)
    first = loss(logits, target)
    with torch.no_grad():
        loss.params[0] += 1.0
    second = loss(logits, target)
    torch.testing.assert_close(second, taylor_loss_reference(logits, target, loss.params))
    assert not torch.equal(first, second)
    loss.params = torch.tensor(TaylorPolynomial.cross_entropy(3).vector, dtype=torch.float64)
    torch.testing.assert_close(loss(logits, target), taylor_loss_reference(logits, target, loss.params))
    timed = TaylorLoss(random_params(2, ("x", "y", "t"), seed=2), variables=("x", "y", "t"))
    values = []
    for t in (0.0, 1.0):
        timed.set_progress(t)
        values.append(timed(logits, target))
        ref = taylor_loss_reference(logits, target, timed.params, variables=("x", "y", "t"), progress=t)
        torch.testing.assert_close(values[-1], ref)
    assert not torch.equal(values[0], values[1])


def test_module_accepts_polynomial_and_infers_order():
    poly = TaylorPolynomial.cross_entropy(4)
    loss = TaylorLoss(poly)
    assert loss.order == 4 and loss.polynomial == poly
    assert TaylorLoss([0.0] * 12).order == 4


def test_params_requiring_grad_give_dloss_dparams():
    params = torch.tensor(WORKED, dtype=torch.float64, requires_grad=True)
    loss = TaylorLoss(params)
    logits = torch.randn(8, 4)
    out = loss(logits, torch.randint(0, 4, (8,)))
    out.backward()
    assert params.grad is not None and torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


def test_reference_backend_supports_second_order_gradients_and_kernel_says_so():
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (4,))
    ref = TaylorLoss(WORKED, backend="reference")(logits, target)
    (g,) = torch.autograd.grad(ref, logits, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), logits)
    assert torch.isfinite(gg).all()
    out = TaylorLoss(WORKED, backend="kernel")(logits, target)
    with pytest.raises(RuntimeError, match="backend='reference'"):
        torch.autograd.grad(out, logits, create_graph=True)


def test_unbatched_input_matches_batched():
    logits = torch.randn(6)
    out = taylor_loss(logits, torch.tensor(2), WORKED)
    torch.testing.assert_close(out, taylor_loss(logits[None], torch.tensor([2]), WORKED))


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
    z = torch.randn(4, 3, requires_grad=True)
    per_row = TaylorLoss(WORKED, reduction="none")(z, torch.tensor([0, 1, 2, 0]))
    assert per_row.grad_fn.name().endswith("taylorglo::(anonymous namespace)::HardLoss>")


def test_cpu_kernel_capabilities_agree():
    # The portable and vectorized builds must give the same numbers (checked in a subprocess each).
    import subprocess
    import sys

    code = (
        "import torch, taylorglo; torch.manual_seed(0); z=torch.randn(33,1000,requires_grad=True);"
        "t=torch.randint(0,1000,(33,)); l=taylorglo.TaylorLoss.cross_entropy_approximation(6)(z,t); l.backward();"
        "w=torch.randn(3,21,5,7,dtype=torch.bfloat16,requires_grad=True); u=torch.randint(0,21,(3,5,7));"
        "m=taylorglo.TaylorLoss.cross_entropy_approximation(3)(w,u); m.backward();"
        "print(torch.ops.taylorglo.cpu_capability(), repr(l.item()), repr(z.grad.double().sum().item()), "
        "repr(z.grad.abs().double().sum().item()), repr(m.float().item()), repr(w.grad.abs().double().sum().item()))"
    )
    outs = {}
    for cap in ("default", "avx2", "avx512"):
        env = {**__import__("os").environ, "TAYLORGLO_CPU_CAPABILITY": cap}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        name, *vals = r.stdout.split()
        outs[name] = [float(v) for v in vals]
    assert "default" in outs
    base = outs["default"]
    for name, vals in outs.items():
        for a, b in zip(vals, base):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), (name, vals, base)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_wrong_vector_length_states_expected_lengths():
    with pytest.raises(ValueError, match=r"valid lengths are 3 \(order 1\), 5 \(order 2\), 8 \(order 3\)"):
        TaylorLoss([0.0] * 7)
    with pytest.raises(ValueError, match="takes 8 parameters, got 5"):
        TaylorLoss([0.0] * 5, order=3)


@pytest.mark.parametrize(
    "logits, target, match",
    [
        (torch.randn(4, 3), torch.tensor([0, 1, 2]), "class-index target must have shape"),
        (torch.randn(4, 3), torch.rand(4, 2), "soft .* must have the logits' shape"),
        (torch.randint(0, 3, (4, 3)), torch.tensor([0, 1, 2, 0]), "floating-point"),
        (torch.randn(4, 3), torch.tensor([True, False, True, True]), "class indices"),
    ],
)
def test_bad_shapes_and_dtypes_raise_clear_errors(logits, target, match):
    with pytest.raises((ValueError, TypeError), match=match):
        taylor_loss(logits, target, WORKED)


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="reduction"):
        TaylorLoss(WORKED, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        TaylorLoss(WORKED, label_smoothing=1.5)
    with pytest.raises(ValueError, match="finite"):
        TaylorLoss([float("nan")] + WORKED[1:])
    with pytest.raises(ValueError, match="progress"):
        taylor_loss(torch.randn(2, 3), torch.tensor([0, 1]), [0.0] * 13, variables=("x", "y", "t"))


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


def test_non_contiguous_inputs_are_handled():
    base = torch.randn(10, 8, dtype=torch.float64)
    logits = base[:, ::2]  # (10, 4) strided
    assert not logits.is_contiguous()
    target = torch.randint(0, 4, (20,))[::2]
    check_parity(logits, target, random_params(3, seed=0))


def test_params_on_wrong_device_or_shape_raise():
    with pytest.raises(ValueError, match="1-d"):
        taylor_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.zeros(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_is_used_and_matches_cpu():
    assert "cuda" in ops.kernel_devices()
    logits, target = make_inputs((64, 1000), torch.float32, "cpu", seed=1)
    cpu = loss_and_grad(taylor_loss, logits, target, params=torch.tensor(WORKED), backend="kernel")
    gpu = loss_and_grad(
        taylor_loss, logits.cuda(), target.cuda(), params=torch.tensor(WORKED).cuda(), backend="kernel"
    )
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Precision when the logits share a large offset (softmax is shift-invariant; the kernels must be too)

OFFSETS = [0.0, 1e3, 1e4, 3e4]
PRECISION_DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    ),
]
# The layouts of the kernels: many classes one row at a time, few classes in transposed lane tiles,
# N-d inputs in strided lane tiles (CUDA: a warp per row, a thread per row).
LAYOUTS = {"rows": (64, 1000), "few-classes": (256, 5), "n-d": (4, 21, 8, 8)}
# Largest relative gradient error, max |g - g64| / max |g64|. float32: what the polynomial's float32
# evaluation costs at any offset (~1e-6 for WORKED; F.cross_entropy's is ~3e-7), where a saved
# float32 log-sum-exp made it 7e-5 at offset 1e3 and 2e-3 at 3e4. 16-bit: twice the unit roundoff
# of the dtype (2^-8 for bfloat16, 2^-11 for float16): the gradient rounded to it once, plus the
# float32 computation (where a row is nearly one-hot, as float16 logits near 3e4 make it, the
# reference's own float32 path is off by 1.3 unit roundoffs too).
GRADIENT_BOUND = {torch.float32: 5e-6, torch.bfloat16: 2 * 2**-8, torch.float16: 2 * 2**-11}


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
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
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


def test_reference_keeps_float64_list_params_in_float64():
    # Order 2, written out here: f(x, y) = a (y - cy) + b (y - cy)^2 + c (x - cx)(y - cy).
    params = [0.1, 1 / 3, -0.7, 0.3, 0.6]  # none of them is a float32 value
    a, b, c, cx, cy = params
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g, dtype=torch.float64)
    target = torch.randint(0, 7, (16,), generator=g)
    p = torch.softmax(logits, dim=1)
    x = F.one_hot(target, 7).double()
    expected = -(a * (p - cy) + b * (p - cy) ** 2 + c * (x - cx) * (p - cy)).sum(1)
    for sequence in (params, tuple(params)):
        out = taylor_loss_reference(logits, target, sequence, reduction="none")
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
