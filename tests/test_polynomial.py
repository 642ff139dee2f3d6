"""Tests of taylorglo.polynomial: layout, rendering, factorial form, canonical coordinates, invariant.

The gradient tests use a small float64 torch implementation of the loss written here (not the
package's reference), so that they pin the mathematics independently of the loss module.
"""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taylorglo.polynomial import (
    TaylorPolynomial,
    canonical_basis,
    canonical_coordinates,
    canonical_dimension,
    check_invariant,
    from_canonical,
    infer_order,
    invariant_margin,
    monomial_exponents,
    parameter_count,
    recenter,
    to_factorial,
)

WORKED_EXAMPLE = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]
MNIST_LOSS = [8.2896, 0.2415, 7.8726, 8.9666, 2.0184, 7.0513, -10.9408, 7.5216]
XY = ("x", "y")
XYT = ("x", "y", "t")

# No subnormals: on older torch (2.4) a torch.compile test earlier in the same process loads kernels
# built with -ffast-math, which flush them to zero, and hypothesis then refuses to generate them.
finite = st.floats(
    min_value=-3.0, max_value=3.0, allow_nan=False, allow_infinity=False, allow_subnormal=False
)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)


ORDERS = st.integers(1, 5)
VARIABLE_SETS = st.sampled_from([XY, XYT])


@st.composite
def polynomials(draw, orders=ORDERS):
    order = draw(orders)
    variables = draw(VARIABLE_SETS)
    n = len(monomial_exponents(order, variables))
    coefs = draw(st.lists(finite, min_size=n, max_size=n))
    centers = draw(st.lists(unit, min_size=len(variables), max_size=len(variables)))
    return TaylorPolynomial(coefs + centers, order=order, variables=variables)


def random_polynomial(rng: random.Random, order: int, variables=XY) -> TaylorPolynomial:
    n = len(monomial_exponents(order, variables))
    coefs = [rng.uniform(-2, 2) for _ in range(n)]
    centers = [rng.uniform(0, 1) for _ in variables]
    return TaylorPolynomial(coefs + centers, order=order, variables=variables)


def close(a, b, rel=1e-9, abs_=1e-9):
    return len(a) == len(b) and all(math.isclose(u, v, rel_tol=rel, abs_tol=abs_) for u, v in zip(a, b))


# ------------------------------------------------------------------------------------------------
# A local float64 torch implementation of the loss (p = softmax(z), loss = mean_rows -sum_c f(x_c, p_c))


def torch_f(params: torch.Tensor, order: int, variables, x, y, t=None) -> torch.Tensor:
    exponents = monomial_exponents(order, variables)
    centers = params[len(exponents) :]
    point = [x, y] + ([t] if "t" in variables else [])
    out = torch.zeros_like(y)
    for i, e in enumerate(exponents):
        term = params[i]
        for v, c, p in zip(point, centers, e):
            if p:
                term = term * (v - c) ** p
        out = out + term
    return out


def logit_gradient(params, order, variables, z, x, t=None, create_graph=False) -> torch.Tensor:
    params = torch.as_tensor(params, dtype=torch.float64)
    z = z.detach().requires_grad_(True)
    p = torch.softmax(z, dim=1)
    loss = -torch_f(params, order, variables, x, p, t).sum(dim=1).mean()
    return torch.autograd.grad(loss, z, create_graph=create_graph)[0]


def batch(labels: str, seed: int, rows: int = 64, classes: int = 10):
    gen = torch.Generator().manual_seed(seed)
    z = 2.0 * torch.randn(rows, classes, dtype=torch.float64, generator=gen)
    if labels == "hard":
        target = torch.randint(0, classes, (rows,), generator=gen)
        x = torch.nn.functional.one_hot(target, classes).to(torch.float64)
    else:
        # Dirichlet(1) rows: soft labels spread over [0, 1] (as mixup/cutmix targets are).
        e = -torch.log(torch.rand(rows, classes, dtype=torch.float64, generator=gen))
        x = e / e.sum(dim=1, keepdim=True)
    return z, x


def progress_values(order: int, variables) -> list:
    # k + 1 distinct t values: more than enough to see every polynomial in t of degree <= k-1.
    return [None] if "t" not in variables else [i / order for i in range(order + 1)]


def measured_rank(order: int, variables, labels: str, seed: int = 0) -> int:
    """Rank of d(dL/dz)/d(params) at a random point (64 rows, 10 classes, float64)."""
    rng = random.Random(seed)
    params0 = torch.tensor(random_polynomial(rng, order, variables).vector, dtype=torch.float64)
    z, x = batch(labels, seed)
    blocks = []
    for t in progress_values(order, variables):

        def grad_of(params, t=t):
            return logit_gradient(params, order, variables, z, x, t, create_graph=True)

        jac = torch.autograd.functional.jacobian(grad_of, params0, vectorize=True)
        blocks.append(jac.reshape(-1, params0.numel()))
    singular = torch.linalg.svdvals(torch.cat(blocks))
    # Real directions give singular values >= 1e-6 here, null ones <= 1e-15: a wide gap.
    return int((singular > 1e-10).sum())


# ------------------------------------------------------------------------------------------------
# Layout


@pytest.mark.parametrize("variables", [XY, XYT])
def test_exponents_and_parameter_count_follow_the_layout_definition(variables):
    # The definition: all exponent tuples read as base-(k+1) numbers (first variable most
    # significant), kept when their total degree is <= k and the y-exponent > 0.
    for order in range(1, 13):
        digits = [range(order + 1)] * len(variables)
        expected = [e for e in itertools.product(*digits) if sum(e) <= order and e[1] > 0]
        assert monomial_exponents(order, variables) == expected
        assert parameter_count(order, variables) == len(expected) + len(variables)
        assert infer_order(len(expected) + len(variables), variables) == order


# ------------------------------------------------------------------------------------------------
# Rendering


def test_text_formula_of_worked_example_substitutes_centers_and_tidies_signs():
    assert TaylorPolynomial(WORKED_EXAMPLE).formula() == (
        "1.5742 (y - 1.4872) - 1.4446 (y - 1.4872)^2 + 2.3616 (y - 1.4872)^3"
        " - 0.6632 (x - 0.8439) (y - 1.4872) - 2.8569 (x - 0.8439) (y - 1.4872)^2"
        " - 1.1313 (x - 0.8439)^2 (y - 1.4872)"
    )


def test_latex_formula_uses_left_right_and_braced_powers():
    assert TaylorPolynomial(WORKED_EXAMPLE).formula("latex") == (
        r"1.5742 \left(y - 1.4872\right) - 1.4446 \left(y - 1.4872\right)^{2}"
        r" + 2.3616 \left(y - 1.4872\right)^{3} - 0.6632 \left(x - 0.8439\right) \left(y - 1.4872\right)"
        r" - 2.8569 \left(x - 0.8439\right) \left(y - 1.4872\right)^{2}"
        r" - 1.1313 \left(x - 0.8439\right)^{2} \left(y - 1.4872\right)"
    )


def test_str_is_the_text_formula():
    poly = TaylorPolynomial(WORKED_EXAMPLE)
    assert str(poly) == poly.formula("text")


def test_formula_omits_zero_terms_zero_centers_and_unit_coefficients():
    poly = TaylorPolynomial([0.0, 1.0, -1.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    assert poly.formula() == "y^2 - y^3 + 2 x^2 y"
    assert poly.formula("latex") == "y^{2} - y^{3} + 2 x^{2} y"


def test_formula_leading_negative_term_and_negative_center():
    poly = TaylorPolynomial([-1.0, 0.0, 0.0, 0.25, 0.0, 0.0, -0.5, 0.5])
    assert poly.formula() == "-(y - 0.5) + 0.25 (x + 0.5) (y - 0.5)"


def test_formula_of_the_zero_polynomial_is_0():
    assert TaylorPolynomial([0.0] * 5).formula() == "0"
    assert TaylorPolynomial([0.0] * 5).formula("latex") == "0"


def test_formula_keeps_tiny_coefficients_in_scientific_notation():
    poly = TaylorPolynomial([1.234e-7, 0.0, 0.0, 0.0, 0.0])
    assert poly.formula() == "1.234e-7 y"
    assert poly.formula("latex") == r"1.234 \times 10^{-7} y"


def test_formula_precision_sets_the_decimals():
    poly = TaylorPolynomial([1 / 3, 0.0, 0.0, 0.0, 0.0])
    assert poly.formula(precision=2) == "0.33 y"
    assert poly.formula(precision=6) == "0.333333 y"


def test_formula_renders_the_progress_variable():
    exps = monomial_exponents(2, XYT)
    coefs = [1.0 if e == (0, 1, 1) else 0.0 for e in exps]
    assert TaylorPolynomial(coefs + [0.0, 0.0, 0.5], variables=XYT).formula() == "y (t - 0.5)"


@pytest.mark.parametrize("style, precision", [("markdown", 4), ("text", -1), ("text", 1.5), ("text", True)])
def test_formula_rejects_bad_style_or_precision(style, precision):
    with pytest.raises(ValueError, match="style|precision"):
        TaylorPolynomial(WORKED_EXAMPLE).formula(style, precision)


def _evaluate_text_formula(text: str, point: dict) -> float:
    expr = text.replace("^", "**")
    expr = re.sub(r"(?<=[\w)])\s+(?=[\w(])", "*", expr)  # juxtaposition is multiplication
    return eval(expr, {"__builtins__": {}}, dict(point))


@settings(max_examples=60, deadline=None)
@given(polynomials(), unit, unit, unit)
def test_text_formula_evaluates_to_the_polynomial(poly, x, y, t):
    point = {"x": x, "y": y, "t": t}
    expected = poly(x, y, t if poly.has_progress else None)
    assert math.isclose(_evaluate_text_formula(poly.formula(precision=17), point), expected, abs_tol=1e-9)


# ------------------------------------------------------------------------------------------------
# The paper's factorial form


def test_factorial_form_reproduces_the_paper_for_order_3():
    v = WORKED_EXAMPLE
    assert to_factorial(v) == (v[6], v[7], v[0], 2 * v[1], 6 * v[2], v[3], 2 * v[4], 2 * v[5])


def test_factorial_form_of_xyt_weights_each_coefficient_by_its_exponent_factorials():
    exps = monomial_exponents(3, XYT)
    poly = TaylorPolynomial([float(i + 1) for i in range(len(exps))] + [0.1, 0.2, 0.3], variables=XYT)
    theta = to_factorial(poly)
    assert theta[:3] == (0.1, 0.2, 0.3)
    for i, e in enumerate(exps):
        assert theta[3 + i] == (i + 1) * math.prod(math.factorial(p) for p in e)


@settings(max_examples=100, deadline=None)
@given(polynomials(orders=st.integers(1, 6)))
def test_factorial_form_round_trips(poly):
    theta = to_factorial(poly)
    assert to_factorial(poly.vector, variables=poly.variables) == theta
    back = TaylorPolynomial.from_factorial(theta, variables=poly.variables)
    assert back.order == poly.order
    assert close(back.vector, poly.vector, rel=1e-15, abs_=0.0)


@settings(max_examples=40, deadline=None)
@given(polynomials(), unit, unit, unit)
def test_factorial_form_reads_as_a_taylor_series(poly, x, y, t):
    theta = to_factorial(poly)
    nv = len(poly.variables)
    centers, scaled = theta[:nv], theta[nv:]
    point = (x, y, t)[:nv]
    series = sum(
        s
        / math.prod(math.factorial(p) for p in e)
        * math.prod((v - c) ** p for v, c, p in zip(point, centers, e))
        for s, e in zip(scaled, poly.exponents)
    )
    assert math.isclose(series, poly(x, y, t if poly.has_progress else None), rel_tol=1e-12, abs_tol=1e-12)


def test_from_factorial_rejects_a_wrong_length():
    with pytest.raises(ValueError, match="cannot have 7 numbers"):
        TaylorPolynomial.from_factorial([0.0] * 7)
    with pytest.raises(ValueError, match="has 8 numbers, got 5"):
        TaylorPolynomial.from_factorial([0.0] * 5, order=3)


def test_to_factorial_rejects_an_order_that_disagrees_with_the_polynomial():
    with pytest.raises(ValueError, match="order=2 disagrees"):
        to_factorial(TaylorPolynomial(WORKED_EXAMPLE), order=2)


# ------------------------------------------------------------------------------------------------
# Canonical coordinates


def test_canonical_dimension_matches_the_reference_table():
    # measured ranks for k = 2..5 -> hard 2, 4, 6, 8; soft 2, 5, 9, 14.
    assert [canonical_dimension(k, XY, "hard") for k in range(2, 6)] == [2, 4, 6, 8]
    assert [canonical_dimension(k, XY, "soft") for k in range(2, 6)] == [2, 5, 9, 14]
    assert [canonical_dimension(k, XYT, "hard") for k in range(2, 6)] == [k * (k - 1) for k in range(2, 6)]
    assert [canonical_dimension(k, XYT, "soft") for k in range(2, 6)] == [
        math.comb(k + 2, 3) - k for k in range(2, 6)
    ]
    assert canonical_dimension(1) == 0


def test_canonical_basis_lists_the_monomials_of_g():
    assert canonical_basis(3) == [(0, 1), (0, 2), (1, 0), (1, 1)]
    assert canonical_basis(3, labels="soft") == [(0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]
    assert canonical_basis(2, XYT) == [(0, 1, 0), (1, 0, 0)]


def test_canonical_coordinates_of_a_simple_polynomial():
    # f = y^2 + 3 x y + 5 x^2 y (centers 0): g = 2 y + 3 x + 5 x^2.
    poly = TaylorPolynomial([0.0, 1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 0.0])
    assert canonical_coordinates(poly) == (2.0, 0.0, 8.0, 0.0)  # on x in {0,1}: x^2 = x
    assert canonical_coordinates(poly, labels="soft") == (2.0, 0.0, 3.0, 0.0, 5.0)


@pytest.mark.parametrize("labels", ["hard", "soft"])
@settings(max_examples=60, deadline=None)
@given(poly=polynomials(), center=st.lists(unit, min_size=3, max_size=3))
def test_from_canonical_reproduces_the_coordinates(labels, poly, center):
    coords = canonical_coordinates(poly, labels=labels)
    assert len(coords) == canonical_dimension(poly.order, poly.variables, labels)
    rep = from_canonical(coords, poly.order, poly.variables, labels, center=center[: len(poly.variables)])
    assert rep.centers == tuple(center[: len(poly.variables)])
    assert close(canonical_coordinates(rep, labels=labels), coords, rel=1e-9, abs_=1e-9)


@pytest.mark.parametrize("labels", ["hard", "soft"])
@settings(max_examples=40, deadline=None)
@given(order=st.integers(1, 5), variables=st.sampled_from([XY, XYT]), data=st.data())
def test_canonical_coordinates_invert_from_canonical(labels, order, variables, data):
    n = canonical_dimension(order, variables, labels)
    coords = data.draw(st.lists(finite, min_size=n, max_size=n))
    rep = from_canonical(coords, order, variables, labels)
    assert rep.centers == (0.0,) * len(variables)
    assert close(canonical_coordinates(rep, labels=labels), coords, rel=1e-12, abs_=1e-12)


def g_differences(p: TaylorPolynomial, q: TaylorPolynomial, xs, ys, ts) -> list:
    return [
        [p.derivative_y(x, y, t) - q.derivative_y(x, y, t) for x in xs for y in ys]
        for t in (ts if p.has_progress else [None])
    ]


@pytest.mark.parametrize("variables", [XY, XYT])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_equal_hard_coordinates_give_the_same_g_on_labels_0_and_1_up_to_a_common_constant(order, variables):
    rng = random.Random(order)
    ys = [i / 20 for i in range(21)]
    ts = [0.0, 0.3, 1.0]
    for _ in range(5):
        p = random_polynomial(rng, order, variables)
        center = [rng.uniform(-1, 2) for _ in variables]
        q = from_canonical(canonical_coordinates(p), order, variables, center=center)
        for diffs in g_differences(p, q, [0.0, 1.0], ys, ts):  # one list per t
            assert max(diffs) - min(diffs) < 1e-9
        # g(1, y) - g(0, y) agrees exactly (no constant) and g(0, y) agrees up to a constant
        d_p = [p.derivative_y(1, y, 0.3) - p.derivative_y(0, y, 0.3) for y in ys]
        d_q = [q.derivative_y(1, y, 0.3) - q.derivative_y(0, y, 0.3) for y in ys]
        assert close(d_p, d_q, abs_=1e-9)


@pytest.mark.parametrize("variables", [XY, XYT])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_equal_soft_coordinates_give_the_same_g_up_to_a_constant(order, variables):
    rng = random.Random(10 + order)
    grid = [i / 8 for i in range(9)]
    for _ in range(5):
        p = random_polynomial(rng, order, variables)
        q = from_canonical(
            canonical_coordinates(p, labels="soft"), order, variables, "soft", center=[0.3] * len(variables)
        )
        for diffs in g_differences(p, q, grid, grid, [0.0, 0.5, 1.0]):
            assert max(diffs) - min(diffs) < 1e-9


def test_hard_coordinates_do_not_see_x_squared_minus_x():
    # x^2 y - x y vanishes on x in {0, 1}: invisible to hard labels, visible to soft ones.
    exps = monomial_exponents(3)
    vec = [0.0] * len(exps) + [0.0, 0.0]
    vec[exps.index((2, 1))], vec[exps.index((1, 1))] = 1.0, -1.0
    assert canonical_coordinates(vec) == (0.0,) * 4
    assert any(canonical_coordinates(vec, labels="soft"))


def test_canonical_functions_reject_bad_input():
    with pytest.raises(ValueError, match="labels must be"):
        canonical_coordinates(WORKED_EXAMPLE, labels="smooth")
    with pytest.raises(ValueError, match="4 canonical coordinates for hard labels, got 3"):
        from_canonical([1.0, 2.0, 3.0], 3)
    with pytest.raises(ValueError, match="one value per variable"):
        from_canonical([1.0, 2.0, 3.0, 4.0], 3, center=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        from_canonical([1.0, math.nan, 3.0, 4.0], 3)
    with pytest.raises(ValueError, match="cannot have 9 numbers"):
        canonical_coordinates([0.0] * 9)


# ------------------------------------------------------------------------------------------------
# Canonical coordinates against gradients measured with torch


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("variables", [XY, XYT])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_equal_canonical_coordinates_give_identical_logit_gradients(order, variables, labels):
    rng = random.Random(100 * order + len(variables))
    z, x = batch(labels, seed=order)
    for _ in range(3):
        p = random_polynomial(rng, order, variables)
        center = [rng.uniform(-1, 2) for _ in variables]
        q = from_canonical(canonical_coordinates(p, labels=labels), order, variables, labels, center=center)
        assert not close(p.vector, q.vector)
        for t in progress_values(order, variables):
            gp = logit_gradient(p.vector, order, variables, z, x, t)
            gq = logit_gradient(q.vector, order, variables, z, x, t)
            assert gp.abs().max() > 1e-3
            torch.testing.assert_close(gp, gq, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("variables", [XY, XYT])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_the_coefficient_of_y_minus_cy_is_inert(order, variables):
    rng = random.Random(order)
    p = random_polynomial(rng, order, variables)
    inert = monomial_exponents(order, variables).index((0, 1) + (0,) * (len(variables) - 2))
    assert inert == 0
    shifted = list(p.vector)
    shifted[inert] += 3.7
    assert canonical_coordinates(shifted, variables=variables) == canonical_coordinates(p)
    for labels in ("hard", "soft"):
        z, x = batch(labels, seed=order)
        for t in progress_values(order, variables):
            torch.testing.assert_close(
                logit_gradient(p.vector, order, variables, z, x, t),
                logit_gradient(shifted, order, variables, z, x, t),
                rtol=1e-9,
                atol=1e-12,
            )


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("variables", [XY, XYT])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_changing_any_single_canonical_coordinate_changes_the_logit_gradient(order, variables, labels):
    rng = random.Random(order)
    n = canonical_dimension(order, variables, labels)
    coords = [rng.uniform(-2, 2) for _ in range(n)]
    center = [rng.uniform(0, 1) for _ in variables]
    base = from_canonical(coords, order, variables, labels, center=center)
    z, x = batch(labels, seed=order)
    ts = progress_values(order, variables)
    g0 = [logit_gradient(base.vector, order, variables, z, x, t) for t in ts]
    for i in range(n):
        moved = list(coords)
        moved[i] += 0.5
        other = from_canonical(moved, order, variables, labels, center=center)
        change = max(
            (logit_gradient(other.vector, order, variables, z, x, t) - g).abs().max().item()
            for t, g in zip(ts, g0)
        )
        assert change > 1e-6, (
            f"canonical coordinate {i} ({canonical_basis(order, variables, labels)[i]}) is inert"
        )


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_measured_gradient_rank_equals_canonical_dimension(order, labels):
    # earlier measurements gave 2, 4, 6, 8 (hard) and 2, 5, 9, 14 (soft) for k = 2..5.
    assert measured_rank(order, XY, labels) == canonical_dimension(order, XY, labels)


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_measured_gradient_rank_with_progress_equals_canonical_dimension(order, labels):
    assert measured_rank(order, XYT, labels) == canonical_dimension(order, XYT, labels)


# ------------------------------------------------------------------------------------------------
# The invariant


def test_worked_example_and_mnist_loss_violate_the_original_rule_at_10_classes():
    for vec in (WORKED_EXAMPLE, MNIST_LOSS):
        assert not check_invariant(vec, 10, rule="original")
        assert invariant_margin(vec, 10, rule="original") < 0


def test_original_margin_is_g1_minus_n_minus_1_times_g0():
    rng = random.Random(3)
    for n in (2, 3, 10, 100):
        for _ in range(20):
            p = random_polynomial(rng, 3)
            h = 1 / n
            expected = p.derivative_y(1, h) - (n - 1) * p.derivative_y(0, h)
            assert math.isclose(invariant_margin(p, n, "original"), expected, rel_tol=1e-9, abs_tol=1e-9)


def test_gradient_margin_is_g1_minus_g0_at_the_uniform_prediction():
    rng = random.Random(4)
    for order in range(1, 7):
        for variables, t in ((XY, None), (XYT, 0.7)):
            p = random_polynomial(rng, order, variables)
            expected = p.derivative_y(1, 0.1, t) - p.derivative_y(0, 0.1, t)
            assert math.isclose(invariant_margin(p, 10, t=t), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_gradient_rule_agrees_with_the_sign_of_the_true_class_gradient_at_uniform_logits():
    rng = random.Random(5)
    z = torch.zeros(1, 10, dtype=torch.float64)
    x = torch.nn.functional.one_hot(torch.tensor([3]), 10).to(torch.float64)
    for order in (2, 3, 4):
        for _ in range(10):
            p = random_polynomial(rng, order)
            grad = logit_gradient(p.vector, order, XY, z, x)
            assert check_invariant(p, 10) == (grad[0, 3].item() < 0)  # descent raises the true logit


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_cross_entropy_approximation_satisfies_the_gradient_rule(order):
    ce = TaylorPolynomial.cross_entropy(order, (0.5, 0.5))
    for n in (2, 3, 10):
        assert check_invariant(ce, n, rule="gradient")
    assert check_invariant(TaylorPolynomial.cross_entropy(3), 10)


@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_inert_coefficient_moves_the_original_margin_but_not_the_gradient_margin(n):
    d = 0.75
    shifted = list(WORKED_EXAMPLE)
    shifted[0] += d
    change = invariant_margin(shifted, n, "original") - invariant_margin(WORKED_EXAMPLE, n, "original")
    assert math.isclose(change, -(n - 2) * d, rel_tol=1e-9, abs_tol=1e-9)
    assert invariant_margin(shifted, n) == invariant_margin(WORKED_EXAMPLE, n)


def test_original_rule_can_be_flipped_by_the_inert_coefficient_alone():
    margin = invariant_margin(WORKED_EXAMPLE, 10, "original")
    shifted = list(WORKED_EXAMPLE)
    shifted[0] += margin / 8 - 1.0  # margin moves by -(n-2) d = -8 d
    assert check_invariant(shifted, 10, "original")
    assert check_invariant(shifted, 10) == check_invariant(WORKED_EXAMPLE, 10)


def test_rules_decide_the_boundary_exactly():
    # f = y^2 / 2 - y / 8 has g = y - 1/8, which is 0 at x = 0 and x = 1 for y = h = 1/8 (n = 8):
    # both margins are exactly 0.
    vec = [-0.125, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert invariant_margin(vec, 8, "original") == 0.0
    assert check_invariant(vec, 8, "original")  # satisfied at equality (violated iff <)
    assert invariant_margin(vec, 8, "gradient") == 0.0
    assert not check_invariant(vec, 8, "gradient")  # the gradient rule is strict


def test_original_rule_is_only_defined_for_order_3_in_x_y():
    with pytest.raises(ValueError, match="only for order 3"):
        check_invariant(TaylorPolynomial.cross_entropy(4), 10, rule="original")
    with pytest.raises(ValueError, match="only for order 3"):
        check_invariant(TaylorPolynomial.cross_entropy(3, variables=XYT), 10, rule="original", t=0.5)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((WORKED_EXAMPLE[:7], 10), {}, "cannot have 7 numbers"),
        ((WORKED_EXAMPLE, 1), {}, "num_classes must be an integer >= 2, got 1"),
        ((WORKED_EXAMPLE, 10.0), {}, "num_classes must be an integer >= 2"),
        ((WORKED_EXAMPLE, True), {}, "num_classes must be an integer >= 2"),
        ((WORKED_EXAMPLE, 10, "sound"), {}, "rule must be one of"),
        ((WORKED_EXAMPLE, 10), {"order": 2}, "has 5 parameters, got 8"),
        ((TaylorPolynomial.cross_entropy(3, variables=XYT), 10), {}, "pass t"),
    ],
)
def test_invariant_rejects_bad_input(args, kwargs, message):
    for fn in (check_invariant, invariant_margin):
        with pytest.raises(ValueError, match=message):
            fn(*args, **kwargs)


def test_invariant_accepts_vectors_and_polynomials_alike():
    poly = TaylorPolynomial(WORKED_EXAMPLE)
    for rule in ("gradient", "original"):
        assert invariant_margin(poly, 10, rule) == invariant_margin(WORKED_EXAMPLE, 10, rule)
    assert parameter_count(3) == len(WORKED_EXAMPLE)


# --------------------------------------------------------------------------------------------
# recenter


def _random_polynomial(rng: random.Random, order: int, variables: tuple[str, ...]) -> TaylorPolynomial:
    n = parameter_count(order, variables) - len(variables)
    coefs = [rng.uniform(-2, 2) for _ in range(n)]
    centers = [rng.uniform(-1, 1) for _ in variables]
    return TaylorPolynomial(coefs + centers, order, variables)


@pytest.mark.parametrize("variables", [("x", "y"), ("x", "y", "t")])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_recenter_keeps_the_polynomial_up_to_terms_without_y(variables, order):
    rng = random.Random(order)
    poly = _random_polynomial(rng, order, variables)
    centers = [rng.uniform(-1, 1) for _ in variables]
    moved = recenter(poly, centers)
    assert moved.centers == pytest.approx(centers)
    assert moved.order == order and moved.variables == variables
    # the layout has no y-free terms, so f(x, y) - f(x, y0) is what must agree
    for _ in range(10):
        x, y, y0, t = (rng.uniform(-1, 1) for _ in range(4))
        args = (t,) if "t" in variables else ()
        want = poly(x, y, *args) - poly(x, y0, *args)
        assert moved(x, y, *args) - moved(x, y0, *args) == pytest.approx(want, abs=1e-9)
        assert moved.derivative_y(x, y, *args) == pytest.approx(poly.derivative_y(x, y, *args), abs=1e-9)


def test_recenter_at_the_own_centers_is_exact():
    poly = _random_polynomial(random.Random(7), 4, ("x", "y", "t"))
    assert recenter(poly, poly.centers) == poly


def test_recenter_truncates_and_adds_or_drops_variables():
    # (y - 0.5)^3 around 0: y^3 - 1.5 y^2 + 0.75 y - 0.125; truncated to order 2: -1.5 y^2 + 0.75 y
    exps = monomial_exponents(3)
    cubic = TaylorPolynomial([1.0 if e == (0, 3) else 0.0 for e in exps] + [0.0, 0.5], 3)
    cut = recenter(cubic, [0.0, 0.0, 0.0], order=2, variables=("x", "y", "t"))
    assert cut.order == 2 and cut.variables == ("x", "y", "t")
    got = dict(zip(cut.exponents, cut.coefficients))
    assert got[(0, 2, 0)] == pytest.approx(-1.5) and got[(0, 1, 0)] == pytest.approx(0.75)
    assert sum(abs(c) for e, c in got.items() if e not in {(0, 2, 0), (0, 1, 0)}) == 0.0
    # back to (x, y): fine while nothing depends on t
    assert recenter(cut, [0.0, 0.0], variables=("x", "y")).variables == ("x", "y")


def test_recenter_names_what_is_wrong():
    xyt = TaylorPolynomial.cross_entropy(3, variables=("x", "y", "t"))
    with pytest.raises(ValueError, match="one value per variable"):
        recenter(xyt, [0.5, 0.5])
    rng = random.Random(3)
    with pytest.raises(ValueError, match="depends on 't'"):
        recenter(_random_polynomial(rng, 3, ("x", "y", "t")), [0.5, 0.5], variables=("x", "y"))
