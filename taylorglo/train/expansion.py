"""Taylor expansions of the trainer's losses: a search can start from any baseline it must beat.

Every loss the trainer knows is, for hard labels, ``-sum_c f(x_c, y_c)`` over the classes c, with
``x_c`` the one-hot label and ``y_c`` the predicted probability (TaylorGLO's form, see
:mod:`taylorglo.polynomial`):

- cross-entropy with label smoothing eps over C classes: ``f = ((1 - eps) x + eps / C) log y``;
- ``gce:q``: the loss is ``(1 - p_t^q) / q``, so ``f = x (y^q - 1) / q``;
- ``sce:alpha,beta,A``: ``-alpha log p_t - beta A (1 - p_t)``, so ``f = x (alpha log y + beta A (1 - y))``;
- ``mae``: ``2 (1 - p_t)``, so ``f = x (2 y - 2)``;
- a Taylor or preset loss: its own polynomial.

Each of the first four is ``(w1 x + w0) g(y)``, linear in x. Its order-k expansion around
``center = (a, b)`` has the coefficient ``(w1 a + w0) g_j`` on ``(y - b)^j``, ``w1 g_j`` on
``(x - a) (y - b)^j`` and nothing else, with ``g_j = g^(j)(b) / j!`` known in closed form; terms
without y are dropped (they do not change the gradient), and so are those of degree above k. With
x in {0, 1} the only error is the truncation in y: near ``y = b`` the polynomial's gradient is the
loss's. :func:`expand_loss` returns it as a :class:`~taylorglo.polynomial.TaylorPolynomial` in the
search's order and variables (``t`` gets zero coefficients, its center 0).

A polynomial loss of order at most k is carried over exactly (zero coefficients on the new terms,
its own centers). One of higher order is re-centered at ``center`` and truncated; one that depends on
t cannot be truncated and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from taylorglo.polynomial import (
    TaylorPolynomial,
    monomial_exponents,
    recenter,
    validate_variables,
)
from taylorglo.train.losses import LossSpec

__all__ = ["expand_loss"]


def _log_terms(b: float, order: int) -> list[float]:
    """Taylor coefficients of log y at b: log b, then (-1)^(j+1) / (j b^j)."""
    return [math.log(b)] + [(-1) ** (j + 1) / (j * b**j) for j in range(1, order + 1)]


def _power_terms(q: float, b: float, order: int) -> list[float]:
    """Taylor coefficients of y^q at b: binom(q, j) b^(q - j)."""
    out, binom = [], 1.0
    for j in range(order + 1):
        out.append(binom * b ** (q - j))
        binom *= (q - j) / (j + 1)
    return out


def _linear_terms(c0: float, c1: float, b: float, order: int) -> list[float]:
    """Taylor coefficients of c0 + c1 y at b."""
    return [c0 + c1 * b, c1] + [0.0] * (order - 1)


def _separable(spec: LossSpec, order: int, b: float, num_classes: int) -> tuple[float, float, list[float]]:
    """(w1, w0, [g_0, ..., g_k]) with f = (w1 x + w0) g(y) for a loss of a closed form."""
    if spec.kind == "cross-entropy":
        eps = spec.label_smoothing or 0.0
        if eps and num_classes < 2:
            raise ValueError(
                f"the expansion of {str(spec)!r} needs the number of classes (label smoothing adds "
                "eps / C to every class's target)"
            )
        return 1.0 - eps, (eps / num_classes if eps else 0.0), _log_terms(b, order)
    opts = dict(spec.options or ())
    if spec.kind == "gce":
        q = opts["q"]
        power = _power_terms(q, b, order)
        return 1.0, 0.0, [(power[0] - 1.0) / q] + [v / q for v in power[1:]]
    if spec.kind == "sce":
        alpha, beta, a_log0 = opts["alpha"], opts["beta"], opts["A"]
        log = _log_terms(b, order)
        lin = _linear_terms(beta * a_log0, -beta * a_log0, b, order)
        return 1.0, 0.0, [alpha * u + v for u, v in zip(log, lin)]
    if spec.kind == "mae":
        return 1.0, 0.0, _linear_terms(-2.0, 2.0, b, order)
    raise ValueError(f"loss kind {spec.kind!r} has no closed-form expansion")  # pragma: no cover


def _polynomial_of(spec: LossSpec) -> TaylorPolynomial:
    if spec.label_smoothing:
        raise ValueError(
            f"the expansion of {str(spec)!r} is not defined: a polynomial loss with label smoothing "
            "is not expanded (drop the smoothing)"
        )
    if spec.kind == "taylor":
        return TaylorPolynomial(spec.params, spec.order, spec.variables)
    from taylorglo.presets import get_preset  # here: only a preset spec needs the registry

    try:
        return get_preset(spec.name).polynomial
    except KeyError as e:
        raise ValueError(f"unknown preset {spec.name!r} in loss spec {str(spec)!r}: {e}") from None


def _carry_over(poly: TaylorPolynomial, order: int, variables: tuple[str, ...]) -> TaylorPolynomial:
    """``poly`` (order <= ``order``) in the layout of (order, variables): the same function."""
    if poly.has_progress and "t" not in variables:
        raise ValueError(
            "the loss depends on the training progress t; the search's variables "
            f"{list(variables)} do not include t"
        )
    centers = (list(poly.centers) + [0.0])[: len(variables)]  # t, where added, at 0
    return recenter(poly, centers, order, variables)  # at its own centers: exact


def _recenter(poly: TaylorPolynomial, order: int, variables: tuple[str, ...], center) -> TaylorPolynomial:
    """``poly`` (in x, y) re-centered at ``center`` and truncated to degree ``order``."""
    if poly.has_progress:
        raise ValueError(
            f"the loss is an order-{poly.order} polynomial in t as well: it cannot be truncated to "
            f"order {order}; search at order {poly.order} or more to start from it"
        )
    return recenter(poly, list(center) + ([0.0] if "t" in variables else []), order, variables)


def expand_loss(
    spec: LossSpec | str,
    order: int,
    variables: Sequence[str] = ("x", "y"),
    *,
    num_classes: int = 0,
    center: tuple[float, float] = (0.5, 0.5),
) -> TaylorPolynomial:
    """The order-``order`` Taylor polynomial of the trainer loss ``spec`` (see the module docstring).

    Args:
        spec: a loss spec (``"gce:q=0.4"``, ``"cross-entropy;label_smoothing=0.1"``, ``"preset:NAME"``...).
        order, variables: the polynomial to produce (a search's ``order`` and ``variables``).
        num_classes: C, needed only for cross-entropy with label smoothing.
        center: (a, b), the point of the expansion in (x, y); b must be in (0, 1].

    Raises ValueError naming what cannot be expanded: an unknown preset, a polynomial in t into
    variables without t, or one of too high an order in t, a smoothed polynomial loss, label
    smoothing without the number of classes.
    """
    spec = LossSpec.coerce(spec)
    variables = validate_variables(variables)
    exponents = monomial_exponents(order, variables)  # checks the order
    order_ = int(order)
    a, b = (float(c) for c in center)
    if not 0.0 < b <= 1.0:
        raise ValueError(f"the y center of an expansion must be in (0, 1], got {b}")
    if spec.kind in ("taylor", "preset"):
        poly = _polynomial_of(spec)
        if poly.order <= order_:
            return _carry_over(poly, order_, variables)
        return _recenter(poly, order_, variables, (a, b))
    w1, w0, g = _separable(spec, order_, b, int(num_classes))
    coefs = []
    for e in exponents:
        ex, ey, et = e[0], e[1], (e[2] if len(e) > 2 else 0)
        if et or ex > 1:
            coefs.append(0.0)
        elif ex == 1:
            coefs.append(w1 * g[ey])
        else:
            coefs.append((w1 * a + w0) * g[ey])
    centers = [a, b] + ([0.0] if "t" in variables else [])
    return TaylorPolynomial(coefs + centers, order_, variables)
