"""The search spaces: normalized push, norm normalization, a searched learning rate (``space``)."""

from __future__ import annotations

import math
import random

import pytest

from taylorglo.polynomial import TaylorPolynomial, canonical_dimension, check_invariant
from taylorglo.search.space import SearchSpace, push_scale


# --- the normalized space ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "order, variables, n",
    [(3, ("x", "y"), 10), (4, ("x", "y"), 10), (3, ("x", "y", "t"), 10), (5, ("x", "y"), 100)],
)
def test_normalized_push_space_reproduces_cross_entropys_push_at_the_uniform_prediction(order, variables, n):
    space = SearchSpace(order, variables, "normalized", num_classes=n, normalization="push")
    assert space.dimension == canonical_dimension(order, variables) - 1
    rng = random.Random(order * 100 + n)
    for _ in range(20):
        coords = [rng.gauss(0, 3) for _ in range(space.dimension)]
        vector = space.to_vector(coords)
        poly = TaylorPolynomial(vector, order, variables)
        t = {"t": 0.0} if poly.has_progress else {}
        # D(1/n) = g(1, 1/n) - g(0, 1/n) = n, exactly cross-entropy's (g = x / y)
        d = poly.derivative_y(1.0, 1 / n, **t) - poly.derivative_y(0.0, 1 / n, **t)
        assert d == pytest.approx(n, rel=1e-9)
        assert push_scale(vector, order, variables, n) == pytest.approx(1.0, rel=1e-9)
        assert check_invariant(vector, n, "gradient", order=order, variables=variables, **t)
        assert space.to_coords(vector) == pytest.approx(coords, abs=1e-8)


def test_normalized_space_has_no_direction_that_only_rescales_the_loss():
    space = SearchSpace(3, ("x", "y"), "normalized", num_classes=10, normalization="push")
    ce = TaylorPolynomial.cross_entropy(3)
    start = space.start("cross-entropy")
    vec = space.to_vector(start)
    # doubling the loss doubles its push: no point of the space is twice another
    assert push_scale([2 * v for v in vec[:-2]] + vec[-2:], 3, ("x", "y"), 10) == pytest.approx(2.0)
    # the cross-entropy start is CE's expansion projected onto the constraint (same shape, its push fixed)
    assert push_scale(vec, 3, ("x", "y"), 10) == pytest.approx(1.0)
    assert push_scale(ce.vector, 3, ("x", "y"), 10) != pytest.approx(1.0)


def test_norm_normalization_makes_the_radial_direction_inert_and_matches_cross_entropys_norm():
    space = SearchSpace(3, ("x", "y"), "normalized", num_classes=10, normalization="norm")
    assert space.dimension == canonical_dimension(3)
    coords = [0.7, -1.3, 2.0, 0.4]
    vector = space.to_vector(coords)
    assert vector == pytest.approx(space.to_vector([5 * c for c in coords]))
    poly = TaylorPolynomial(vector, 3)
    grid = [(i + 0.5) / 64 for i in range(64)]
    push = [p * (1 - p) * (poly.derivative_y(1.0, p) - poly.derivative_y(0.0, p)) for p in grid]
    ce = [1 - p for p in grid]  # cross-entropy: g = x / y, so p (1 - p) / p
    assert math.fsum(v * v for v in push) == pytest.approx(math.fsum(v * v for v in ce), rel=1e-9)


def test_searched_learning_rate_is_a_bounded_log_coordinate():
    space = SearchSpace(
        3, ("x", "y"), "normalized", num_classes=10, normalization="push", lr_bounds=(0.05, 1.6)
    )
    assert space.dimension == canonical_dimension(3)  # 4 - 1 + 1
    assert space.learning_rate(space.start("zeros", 0.2)) == pytest.approx(0.2)
    assert space.learning_rate(space.start("zeros", 50.0)) == pytest.approx(1.6)  # clipped
    assert space.bound_excess([0, 0, 0, math.log(0.1)]) == 0.0
    assert space.bound_excess([0, 0, 0, math.log(3.2)]) == pytest.approx(math.log(2))
    assert space.bound_excess([0, 0, 0, math.log(0.025)]) == pytest.approx(math.log(2))


@pytest.mark.parametrize("normalization", ["norm", "push"])
@pytest.mark.parametrize("variables", [("x", "y"), ("x", "y", "t")])
def test_a_start_trains_as_the_loss_at_its_learning_rate(normalization, variables):
    """decode(to_coords(v, lr)) is v rescaled by c > 0 at lr / c: under SGD the same steps lr * grad."""
    torch = pytest.importorskip("torch")
    from taylorglo import TaylorLoss
    from taylorglo.train.expansion import expand_loss

    space = SearchSpace(
        3, variables, "normalized", num_classes=10, normalization=normalization, lr_bounds=(0.01, 10.0)
    )
    logits = torch.randn(32, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.arange(32) % 10

    def step(vector, lr):
        z = logits.clone().requires_grad_()
        loss = TaylorLoss(list(vector), order=3, variables=variables)(z, target)
        return lr * torch.autograd.grad(loss, z)[0]

    for spec, lr in [("gce:q=0.4", 0.4), ("sce:alpha=0.1,beta=1.0", 0.2), ("cross-entropy", 0.8)]:
        vector = expand_loss(spec, 3, variables, num_classes=10).vector
        decoded, decoded_lr = space.decode(space.to_coords(vector, lr))
        assert decoded_lr != pytest.approx(lr)  # the expansion is not normalized already
        torch.testing.assert_close(step(decoded, decoded_lr), step(vector, lr), rtol=1e-9, atol=1e-12)
    # the bounds still clip: a start far outside lands on them
    coords = space.to_coords(expand_loss("gce:q=0.4", 3, variables, num_classes=10).vector, 1e6)
    assert space.learning_rate(coords) == pytest.approx(10.0)
