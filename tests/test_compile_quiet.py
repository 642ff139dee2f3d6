"""Under torch.compile the loss is quiet: Dynamo warns about nothing it traces (issue 15).

Dynamo warns when it traces a ``functools.lru_cache``/``cache``-wrapped function; the loss keeps
its caches out of the traced region. Each case compiles with warnings turned into errors.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from taylorglo import TaylorLoss, taylor_loss

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]
XYT = ("x", "y", "t")
T_PARAMS = [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.6, -0.1, 0.3, 0.2, 0.5, 0.5, 0.5]  # order 2 in (x, y, t)


def _hard(shape):
    return torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=torch.Generator().manual_seed(1))


def _soft(shape):
    return torch.softmax(torch.randn(shape, generator=torch.Generator().manual_seed(2)), dim=1)


CASES = {
    "label smoothing": (lambda: TaylorLoss(WORKED, label_smoothing=0.1), _hard),
    "soft targets": (lambda: TaylorLoss(WORKED), _soft),
    "soft targets with label smoothing": (lambda: TaylorLoss(WORKED, label_smoothing=0.1), _soft),
    "t variable": (lambda: TaylorLoss(T_PARAMS, variables=XYT), _hard),
    "t variable, soft targets, label smoothing": (
        lambda: TaylorLoss(T_PARAMS, variables=XYT, label_smoothing=0.2),
        _soft,
    ),
    "reference backend, soft targets with label smoothing": (
        lambda: TaylorLoss(WORKED, label_smoothing=0.1, backend="reference"),
        _soft,
    ),
    "reference backend, t variable": (
        lambda: TaylorLoss(T_PARAMS, variables=XYT, backend="reference"),
        _hard,
    ),
    # The functional form with the order inferred from the vector's length, under compile.
    "functional, soft targets with label smoothing": (
        lambda: lambda z, y: taylor_loss(z, y, torch.tensor(WORKED), label_smoothing=0.1),
        _soft,
    ),
    "functional, t variable": (
        lambda: lambda z, y: taylor_loss(z, y, torch.tensor(T_PARAMS), variables=XYT, progress=0.25),
        _hard,
    ),
}


def _check_quiet_and_equal(case, dynamic, shapes):
    make_loss, make_target = CASES[case]
    loss_fn = make_loss()
    if isinstance(loss_fn, TaylorLoss) and loss_fn.has_progress:
        loss_fn.set_progress(0.25)
    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, backend="aot_eager", fullgraph=True, dynamic=dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in shapes:
            logits = torch.randn(shape, generator=torch.Generator().manual_seed(3), requires_grad=True)
            target = make_target(shape)
            got = compiled(logits, target)
            (grad,) = torch.autograd.grad(got, logits)
            want = loss_fn(logits, target)
            (want_grad,) = torch.autograd.grad(want, logits)
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(grad, want_grad)


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_loss_gives_no_warning_and_matches_eager(case):
    _check_quiet_and_equal(case, dynamic=False, shapes=[(6, 5, 3)])


@pytest.mark.parametrize(
    "case", ["soft targets with label smoothing", "t variable, soft targets, label smoothing"]
)
def test_compiled_loss_with_dynamic_shapes_gives_no_warning(case):
    # The class count is symbolic here: the smoothing matrix is built from it inside the graph.
    _check_quiet_and_equal(case, dynamic=True, shapes=[(8, 5), (6, 7, 3)])
