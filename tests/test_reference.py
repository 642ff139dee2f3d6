"""The pure-PyTorch reference (taylorglo.reference): the specification the kernels are held to.

Checked here against what does not depend on it: the pure-Python polynomial (taylorglo.polynomial),
closed forms written out by hand, and the semantics of F.cross_entropy (reductions, ignore_index,
label smoothing, soft targets).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from taylorglo import TaylorLoss, TaylorPolynomial, parameter_count, taylor_loss_reference
from taylorglo.reference import evaluate_polynomial

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]


def random_vector(order, variables, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        float(v) for v in torch.randn(parameter_count(order, variables), generator=g, dtype=torch.float64)
    ]


@pytest.mark.parametrize("variables", [("x", "y"), ("x", "y", "t")], ids=["xy", "xyt"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_evaluate_polynomial_agrees_with_the_pure_python_polynomial(order, variables):
    vector = random_vector(order, variables, seed=order)
    poly = TaylorPolynomial(vector, order=order, variables=variables)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 50, generator=g, dtype=torch.float64)
    t = 0.4 if len(variables) == 3 else None
    got = evaluate_polynomial(torch.tensor(vector, dtype=torch.float64), order, variables, x, y, t)
    want = torch.tensor([poly(float(a), float(b), t) for a, b in zip(x, y)], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # and its derivative in y, the quantity training depends on
    yy = y.clone().requires_grad_(True)
    (dy,) = torch.autograd.grad(
        evaluate_polynomial(torch.tensor(vector, dtype=torch.float64), order, variables, x, yy, t).sum(), yy
    )
    want_dy = torch.tensor(
        [poly.derivative_y(float(a), float(b), t) for a, b in zip(x, y)], dtype=torch.float64
    )
    torch.testing.assert_close(dy, want_dy, rtol=1e-12, atol=1e-12)


def test_worked_example_gives_the_same_numbers_as_the_module():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    per_row = taylor_loss_reference(logits, target, WORKED, reduction="none")
    torch.testing.assert_close(per_row, torch.tensor([15.2385, 15.3507]), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_row, TaylorLoss(WORKED, reduction="none")(logits, target))


def test_reductions_ignore_index_and_label_smoothing_follow_cross_entropy():
    # Written out: per position -sum_c f(x'_c, p_c), x' = (1 - eps) onehot + eps / C; ignored
    # positions give 0 and leave the mean's count.
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(10, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 6, (10,), generator=g)
    target[[2, 7]] = -1
    params = torch.tensor(WORKED, dtype=torch.float64)
    eps = 0.2
    valid = target != -1
    x = F.one_hot(target.clamp(min=0), 6).double() * (1 - eps) + eps / 6
    p = torch.softmax(logits, 1)
    per_row = -evaluate_polynomial(params, 3, ("x", "y"), x, p).sum(1) * valid
    kw = dict(ignore_index=-1, label_smoothing=eps)
    torch.testing.assert_close(taylor_loss_reference(logits, target, params, reduction="none", **kw), per_row)
    torch.testing.assert_close(
        taylor_loss_reference(logits, target, params, reduction="sum", **kw), per_row.sum()
    )
    torch.testing.assert_close(
        taylor_loss_reference(logits, target, params, reduction="mean", **kw), per_row.sum() / valid.sum()
    )
    all_ignored = torch.full((10,), -1)
    assert taylor_loss_reference(logits, all_ignored, params, ignore_index=-1).item() == 0.0


def test_soft_one_hot_targets_give_the_class_index_loss():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    target = torch.randint(0, 5, (2, 3), generator=g)
    soft = F.one_hot(target, 5).movedim(-1, 1).double()
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            taylor_loss_reference(logits, soft, WORKED, reduction=reduction),
            taylor_loss_reference(logits, target, WORKED, reduction=reduction),
        )


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
