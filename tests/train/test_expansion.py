"""Taylor expansions of the trainer's losses (``taylorglo.train.expansion``): the start points of a
search that begins at the baseline it has to beat."""

from __future__ import annotations

import math

import pytest
import torch

from taylorglo import TaylorLoss
from taylorglo.polynomial import TaylorPolynomial, monomial_exponents
from taylorglo.presets import get_preset
from taylorglo.train.expansion import expand_loss
from taylorglo.train.losses import build_loss

SPECS = [
    "cross-entropy",
    "cross-entropy;label_smoothing=0.3",
    "gce:q=0.4",
    "gce:q=0.7",
    "gce:q=1.0",
    "sce:alpha=0.1,beta=1.0",
    "sce:alpha=1.0,beta=0.5,A=-6.0",
    "mae",
    "preset:taylor-ce-4",
]


def _per_class(spec: str, x: float, y: float, c: int) -> float:
    """f(x, y) of the loss -sum_c f(x_c, y_c), from each loss's formula (not from the module)."""
    if spec.startswith("cross-entropy"):
        eps = 0.3 if "smoothing" in spec else 0.0
        return ((1 - eps) * x + eps / c) * math.log(y)
    if spec.startswith("gce"):
        q = float(spec.split("=")[1])
        return x * (y**q - 1) / q
    if spec.startswith("sce"):
        opts = dict(kv.split("=") for kv in spec.split(":")[1].split(","))
        alpha, beta, a = float(opts["alpha"]), float(opts["beta"]), float(opts.get("A", -4.0))
        return x * (alpha * math.log(y) + beta * a * (1 - y))
    if spec == "mae":
        return x * (2 * y - 2)
    raise AssertionError(spec)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("variables", [("x", "y"), ("x", "y", "t")])
def test_cross_entropy_expansion_is_the_polynomial_modules_own(order, variables):
    got = expand_loss("cross-entropy", order, variables)
    want = TaylorPolynomial.cross_entropy(order, variables=variables)
    assert got.vector == pytest.approx(want.vector, abs=1e-12)


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.startswith("preset")])
def test_expansion_converges_to_the_loss_formula_near_the_center(spec):
    """At order 9 the polynomial equals f(x, y) up to a term without y, for x in {0, 1}."""
    poly = expand_loss(spec, 9, num_classes=10)
    for x in (0.0, 1.0):
        # f(x, y) - f(x, 0.5): the dropped constants do not depend on y
        for y in (0.35, 0.45, 0.6, 0.65):
            got = poly(x, y) - poly(x, 0.5)
            want = _per_class(spec, x, y, 10) - _per_class(spec, x, 0.5, 10)
            assert got == pytest.approx(want, abs=2e-5), (x, y)


@pytest.mark.parametrize("spec", SPECS)
def test_expansion_gradient_matches_the_trainer_loss(spec):
    """The loss TaylorLoss computes from the expansion has the trainer loss's gradient where the
    predictions are near the center (two classes: p in [0.38, 0.62])."""
    torch.manual_seed(0)
    logits = ((torch.rand(64, 2, dtype=torch.float64) - 0.5) / 2).requires_grad_()
    target = torch.randint(0, 2, (64,))
    poly = expand_loss(spec, 9, num_classes=2)
    mine = TaylorLoss(list(poly.vector), order=9)
    (g_poly,) = torch.autograd.grad(mine(logits, target), logits)
    (g_ref,) = torch.autograd.grad(build_loss(spec, 2)(logits, target), logits)
    torch.testing.assert_close(g_poly, g_ref, rtol=0, atol=1e-4 * g_ref.abs().max().item())


def test_gce_and_sce_coefficients_at_order_2():
    # gce q: g(y) = (y^q - 1) / q, g' = y^(q-1), g''/2 = (q - 1) y^(q-2) / 2 at b = 0.5; f = x g(y)
    q, b = 0.4, 0.5
    poly = expand_loss("gce:q=0.4", 2)
    assert monomial_exponents(2) == [(0, 1), (0, 2), (1, 1)]
    assert poly.coefficients == pytest.approx(
        [0.5 * b ** (q - 1), 0.5 * (q - 1) * b ** (q - 2) / 2, b ** (q - 1)]
    )
    assert poly.centers == (0.5, 0.5)
    # sce: g = alpha log y + beta A (1 - y): g' = alpha / y - beta A
    poly = expand_loss("sce:alpha=0.1,beta=1.0", 2)
    g1, g2 = 0.1 / b + 4.0, -0.1 / (2 * b**2)
    assert poly.coefficients == pytest.approx([0.5 * g1, 0.5 * g2, g1])


def test_polynomial_losses_carry_over_exactly_or_are_recentered():
    preset = get_preset("taylor-ce-2").polynomial
    same = expand_loss("preset:taylor-ce-2", 4, ("x", "y", "t"))
    for x in (0.0, 1.0):
        for y in (0.1, 0.5, 0.9):
            assert same(x, y, 0.3) == pytest.approx(preset(x, y))
    # a higher-order polynomial is re-centered at (0.5, 0.5) and truncated: exact when nothing is cut
    poly = TaylorPolynomial([0.3, -1.2, 0.7, 0.0, 0.4, -0.5, 0.0, 0.2, 0.0, 0.0, 0.25, 0.6], order=4)
    spec = "params:" + ",".join(repr(v) for v in poly.vector) + ";order=4"
    cut = expand_loss(spec, 3)
    assert cut.centers == (0.5, 0.5)
    for x in (0.0, 1.0):
        for y in (0.2, 0.7):
            assert cut(x, y) - cut(x, 0.5) == pytest.approx(poly(x, y) - poly(x, 0.5))


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("cross-entropy;label_smoothing=0.1", {"order": 3}, "number of classes"),
        ("preset:no-such-preset", {"order": 3}, "unknown preset 'no-such-preset'"),
        ("preset:taylor-ce-4;label_smoothing=0.1", {"order": 3}, "label smoothing"),
        ("preset:mnist1d-cnn1d-xyt", {"order": 3, "variables": ("x", "y")}, "do not include t"),
        ("gce:q=0.4", {"order": 0}, "order"),
        ("gce:q=0.4", {"order": 3, "center": (0.5, 0.0)}, "y center"),
    ],
)
def test_what_cannot_be_expanded_is_named(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        expand_loss(spec, **kwargs)


def test_a_t_polynomial_of_higher_order_is_refused():
    poly = TaylorPolynomial.cross_entropy(4, variables=("x", "y", "t"))
    spec = "params:" + ",".join(repr(v) for v in poly.vector) + ";order=4;variables=x,y,t"
    with pytest.raises(ValueError, match="cannot be truncated"):
        expand_loss(spec, 3, ("x", "y", "t"))
