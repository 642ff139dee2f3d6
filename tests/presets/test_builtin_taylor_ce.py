"""The taylor-ce-k presets: Taylor cross-entropy (Feng et al., IJCAI 2020) as exact TaylorGLO polynomials.

The loss of a sample with target t is sum_{j=1}^{k} (1 - p_t)^j / j, i.e. f(x, y) = -x sum_j (1 - y)^j / j,
a polynomial of order k + 1 (taylor-ce-6 has order 7, above the kernels' specialized orders 2-6).
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from taylorglo import TaylorLoss, ops
from taylorglo.polynomial import check_invariant, monomial_exponents
from taylorglo.presets import get_preset

from_preset = TaylorLoss.from_preset

ORDERS = range(2, 7)


def _series(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Per-sample sum_{j=1}^{k} (1 - p_t)^j / j, written from the definition."""
    p_t = logits.softmax(1).gather(1, target[:, None])[:, 0]
    return sum((1 - p_t) ** j / j for j in range(1, k + 1))


def _batch(seed: int, n: int = 256, c: int = 10, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, c, generator=g, dtype=torch.float64)).requires_grad_()
    return logits, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("k", ORDERS)
def test_each_preset_is_the_exact_truncated_series_around_zero_one(fresh_registry, k):
    preset = get_preset(f"taylor-ce-{k}")
    assert preset.order == k + 1 and preset.variables == ("x", "y")
    exact = {(1, j): Fraction((-1) ** (j + 1), j) for j in range(1, k + 1)}
    expected = [float(exact.get(e, Fraction(0))) for e in monomial_exponents(k + 1)] + [0.0, 1.0]
    assert list(preset.params) == expected  # the nearest doubles of the exact rationals, bit for bit
    poly = preset.polynomial
    for y in (0.0, 0.1, 0.5, 0.9, 1.0):
        series = sum((1 - y) ** j / j for j in range(1, k + 1))
        assert math.isclose(poly(1.0, y), -series, rel_tol=1e-14, abs_tol=1e-15)
        assert poly(0.0, y) == 0.0  # non-target classes add nothing
        assert math.isclose(poly(0.3, y), 0.3 * poly(1.0, y), rel_tol=1e-14, abs_tol=1e-15)
    assert preset.provenance["kind"] == "analytic" and "Feng" in preset.provenance["reference"]
    assert preset.results is None  # nothing measured, nothing claimed
    assert preset.invariant["gradient"]["passes"] is check_invariant(preset.params, 10, "gradient") is True
    assert any(f"order {k + 1}" in note for note in preset.notes)


@pytest.mark.parametrize("k", ORDERS)
@pytest.mark.parametrize("backend", ["kernel", "reference"])
def test_each_preset_loss_and_gradient_equal_the_series_on_random_logits(fresh_registry, k, backend):
    if backend == "kernel" and not ops.has_kernel("cpu", warn=False):
        pytest.skip("no compiled CPU kernel in this build")
    logits, target = _batch(k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # order 7 must not fall back to the reference with a warning
        loss = from_preset(f"taylor-ce-{k}", backend=backend, reduction="none")(logits, target)
    series = _series(logits, target, k)
    torch.testing.assert_close(loss, series, rtol=1e-12, atol=1e-13)
    (g,) = torch.autograd.grad(loss.mean(), logits)
    (g_series,) = torch.autograd.grad(series.mean(), logits)
    torch.testing.assert_close(g, g_series, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("k", ORDERS)
def test_float32_and_label_smoothing_follow_the_series(fresh_registry, k):
    logits, target = _batch(10 + k)
    eps, c = 0.1, logits.shape[1]
    smoothed = from_preset(f"taylor-ce-{k}", label_smoothing=eps)(logits, target)
    # soft labels x' = (1 - eps) onehot + eps / C: every class adds x'_c sum_j (1 - p_c)^j / j
    x = (1 - eps) * F.one_hot(target, c).double() + eps / c
    tail = sum((1 - logits.softmax(1)) ** j / j for j in range(1, k + 1))
    torch.testing.assert_close(smoothed, (x * tail).sum(1).mean(), rtol=1e-12, atol=1e-13)
    single = from_preset(f"taylor-ce-{k}")(logits.detach().float(), target)
    torch.testing.assert_close(single.double(), _series(logits, target, k).mean(), rtol=1e-5, atol=1e-6)


def test_taylor_ce_approaches_cross_entropy_from_below_as_k_grows(fresh_registry):
    logits, target = _batch(0, n=512)
    ce = F.cross_entropy(logits, target, reduction="none")
    (g_ce,) = torch.autograd.grad(ce.mean(), logits)
    gaps, cosines = [], []
    for k in ORDERS:
        loss = from_preset(f"taylor-ce-{k}", reduction="none")(logits, target)
        gap = ce - loss  # the series tail sum_{j > k} (1 - p_t)^j / j
        assert bool((gap >= -1e-12).all())
        gaps.append(gap.mean().item())
        (g,) = torch.autograd.grad(loss.mean(), logits)
        cosines.append(F.cosine_similarity(g.flatten(), g_ce.flatten(), dim=0).item())
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert all(a < b for a, b in zip(cosines, cosines[1:])), cosines
    # where p_t >= 0.5 the tail after k = 6 is below sum_{j >= 7} 0.5^j / 7 = 0.5^6 / 7
    confident = logits.softmax(1).gather(1, target[:, None])[:, 0] >= 0.5
    last = ce - from_preset("taylor-ce-6", reduction="none")(logits, target)
    assert bool((last[confident] <= 0.5**6 / 7).all())


@pytest.mark.parametrize("k", ORDERS)
def test_the_loss_is_bounded_by_the_harmonic_number(fresh_registry, k):
    logits = torch.tensor([[-60.0, 0.0, 0.0], [60.0, 0.0, 0.0]], dtype=torch.float64)
    values = from_preset(f"taylor-ce-{k}", reduction="none")(logits, torch.tensor([0, 0]))
    harmonic = sum(1 / j for j in range(1, k + 1))
    torch.testing.assert_close(
        values, torch.tensor([harmonic, 0.0], dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


def test_the_trainer_trains_with_the_order_7_preset(fresh_registry):
    from taylorglo.train import TrainConfig, train

    result = train(TrainConfig(dataset="digits", epochs=3, lr=0.5, num_threads=1), "preset:taylor-ce-6")
    assert result.status == "ok" and result.loss == "preset:taylor-ce-6"
    assert result.val_accuracy > 0.5  # chance is 0.1
