"""TaylorLoss, the nn.Module, and the functional taylor_loss: values, parameters, torch.compile.

The ops under them are tested in test_ops.py, the reference in test_reference.py, bad inputs in
test_loss_errors.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_ops import WORKED, make_inputs, random_params  # helpers shared with the op tests

from taylorglo import TaylorLoss, TaylorPolynomial, taylor_loss, taylor_loss_reference

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


def test_unbatched_input_matches_batched():
    logits = torch.randn(6)
    out = taylor_loss(logits, torch.tensor(2), WORKED)
    torch.testing.assert_close(out, taylor_loss(logits[None], torch.tensor([2]), WORKED))


# ---------------------------------------------------------------------------------------------
# torch.compile


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
