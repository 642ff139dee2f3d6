"""The TaylorGLO parameterization: a loss as a low-order Taylor polynomial in label and prediction.

Gonzalez & Miikkulainen, "Optimizing Loss Functions Through Multivariate Taylor Polynomial
Parameterization" (GECCO 2021). A polynomial of order ``k`` in the variables ``(x, y)`` (label,
predicted probability) or ``(x, y, t)`` (plus training progress) is

    f(v) = sum_e  theta_e * prod_i (v_i - c_i)^{e_i}

over the exponent tuples ``e`` with ``sum(e) <= k`` and a y-exponent ``> 0`` (the others do not
change the gradient with respect to the prediction). The flat parameter vector uses the original
TaylorGLO layout: the coefficients ``theta_e`` in the order of the exponent tuples read as base-(k+1)
numbers, first variable most significant, then the centers ``c_i`` one per variable. Each stored
value multiplies its monomial directly (no factorial division). The per-sample loss is
``-sum_classes f(x_c, y_c)``.

This module is pure Python: it imports nothing of torch or of the rest of the package.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "VARIABLE_SETS",
    "TaylorPolynomial",
    "infer_order",
    "monomial_exponents",
    "parameter_count",
    "validate_variables",
]

VARIABLE_SETS: tuple[tuple[str, ...], ...] = (("x", "y"), ("x", "y", "t"))
MAX_ORDER = 20


def validate_variables(variables: Sequence[str]) -> tuple[str, ...]:
    """Return ``variables`` as a tuple, or raise ValueError naming the accepted sets."""
    variables = tuple(variables)
    if variables not in VARIABLE_SETS:
        raise ValueError(f"variables must be one of {list(VARIABLE_SETS)}, got {variables}")
    return variables


@lru_cache(maxsize=None)
def _exponents(order: int, variables: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    y_axis = variables.index("y")
    return tuple(
        e
        for e in itertools.product(range(order + 1), repeat=len(variables))  # base-(k+1), first variable most significant
        if sum(e) <= order and e[y_axis] > 0
    )


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an integer in [1, {MAX_ORDER}], got {order!r}")
    return order


def monomial_exponents(order: int, variables: Sequence[str] = ("x", "y")) -> list[tuple[int, ...]]:
    """Exponent tuples of the stored coefficients, in vector order.

    >>> monomial_exponents(3)
    [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1)]
    """
    return list(_exponents(_check_order(order), validate_variables(variables)))


def parameter_count(order: int, variables: Sequence[str] = ("x", "y")) -> int:
    """Length of the flat parameter vector: coefficients plus one center per variable.

    ``(x, y)``: k(k+1)/2 + 2 (k=3: 8). ``(x, y, t)``: C(k+3,3) - C(k+2,2) + 3 (k=3: 13).
    """
    variables = validate_variables(variables)
    return len(_exponents(_check_order(order), variables)) + len(variables)


def infer_order(length: int, variables: Sequence[str] = ("x", "y")) -> int:
    """The order whose parameter vector has ``length`` numbers; ValueError listing valid lengths."""
    variables = validate_variables(variables)
    for k in range(1, MAX_ORDER + 1):
        n = parameter_count(k, variables)
        if n == length:
            return k
        if n > length:
            break
    valid = ", ".join(f"{parameter_count(k, variables)} (order {k})" for k in range(1, 7))
    raise ValueError(
        f"a parameter vector for variables {variables} cannot have {length} numbers; "
        f"valid lengths are {valid}, ..."
    )


class TaylorPolynomial:
    """A TaylorGLO polynomial f(x, y[, t]) given by its flat parameter vector.

    Args:
        params: the flat vector in the original TaylorGLO layout (coefficients, then centers).
        order: the polynomial order k; inferred from ``len(params)`` when omitted.
        variables: ``("x", "y")`` or ``("x", "y", "t")``.
    """

    def __init__(self, params: Sequence[float], order: int | None = None, variables: Sequence[str] = ("x", "y")):
        self.variables = validate_variables(variables)
        values = [float(v) for v in params]
        if order is None:
            order = infer_order(len(values), self.variables)
        self.order = _check_order(order)
        expected = parameter_count(self.order, self.variables)
        if len(values) != expected:
            raise ValueError(
                f"an order-{self.order} polynomial in {self.variables} has {expected} parameters, got {len(values)}"
            )
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise ValueError(f"parameter {i} is {v}: parameters must be finite")
        self.exponents: tuple[tuple[int, ...], ...] = _exponents(self.order, self.variables)
        n = len(self.exponents)
        self.coefficients: tuple[float, ...] = tuple(values[:n])
        self.centers: tuple[float, ...] = tuple(values[n:])

    # ----------------------------------------------------------------------------------------
    @property
    def vector(self) -> tuple[float, ...]:
        """The flat parameter vector (original layout)."""
        return self.coefficients + self.centers

    def __len__(self) -> int:
        return len(self.coefficients) + len(self.centers)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TaylorPolynomial)
            and self.variables == other.variables
            and self.order == other.order
            and self.vector == other.vector
        )

    def __hash__(self) -> int:
        return hash((self.variables, self.order, self.vector))

    def __repr__(self) -> str:
        vec = ", ".join(f"{v:.6g}" for v in self.vector)
        return f"TaylorPolynomial([{vec}], order={self.order}, variables={self.variables})"

    @property
    def has_progress(self) -> bool:
        """Whether the polynomial depends on the training progress t."""
        return "t" in self.variables

    # ----------------------------------------------------------------------------------------
    def __call__(self, x: float, y: float, t: float | None = None) -> float:
        """Evaluate f at one point (t is required when the polynomial has the t variable)."""
        point = self._point(x, y, t)
        total = 0.0
        for coef, e in zip(self.coefficients, self.exponents):
            term = coef
            for v, c, p in zip(point, self.centers, e):
                term *= (v - c) ** p
            total += term
        return total

    def derivative_y(self, x: float, y: float, t: float | None = None) -> float:
        """g = df/dy at one point: the quantity that training depends on."""
        point = self._point(x, y, t)
        y_axis = self.variables.index("y")
        total = 0.0
        for coef, e in zip(self.coefficients, self.exponents):
            term = coef * e[y_axis]
            for axis, (v, c, p) in enumerate(zip(point, self.centers, e)):
                term *= (v - c) ** (p - 1 if axis == y_axis else p)
            total += term
        return total

    def _point(self, x: float, y: float, t: float | None) -> tuple[float, ...]:
        if self.has_progress:
            if t is None:
                raise ValueError("this polynomial depends on the training progress t: pass t")
            return (x, y, t)
        return (x, y)

    def power_basis(self, t: float | None = None) -> list[list[float]]:
        """Coefficients ``P[i][j]`` of ``x^i y^j`` with the centers expanded (t folded in when present).

        f(x, y) = sum_{i,j <= k} P[i][j] x^i y^j.
        """
        k = self.order
        out = [[0.0] * (k + 1) for _ in range(k + 1)]
        cx, cy = self.centers[0], self.centers[1]
        tfac = 1.0
        for coef, e in zip(self.coefficients, self.exponents):
            ex, ey = e[0], e[1]
            if self.has_progress:
                if t is None:
                    raise ValueError("this polynomial depends on the training progress t: pass t")
                tfac = (t - self.centers[2]) ** e[2]
            for r in range(ex + 1):
                bx = math.comb(ex, r) * (-cx) ** (ex - r)
                for s in range(ey + 1):
                    out[r][s] += coef * tfac * bx * math.comb(ey, s) * (-cy) ** (ey - s)
        return out

    # ----------------------------------------------------------------------------------------
    @classmethod
    def cross_entropy(
        cls, order: int, center: tuple[float, float] = (0.5, 0.5), variables: Sequence[str] = ("x", "y")
    ) -> TaylorPolynomial:
        """The order-k Taylor expansion of ``x * log(y)`` in y around ``center = (a, b)``.

        x log y = (x - a) log y + a log y, and log y = log b + sum_j (-1)^(j+1) (y - b)^j / (j b^j),
        so the coefficient of (x-a)^0 (y-b)^j is a (-1)^(j+1) / (j b^j) and that of (x-a)^1 (y-b)^j is
        (-1)^(j+1) / (j b^j); the constant terms are dropped (they do not change the gradient).
        With the loss ``-sum_c f(x_c, y_c)`` this approximates cross-entropy near the center.
        """
        variables = validate_variables(variables)
        order = _check_order(order)
        a, b = (float(c) for c in center)
        if not 0.0 < b:
            raise ValueError(f"the y center of a cross-entropy expansion must be > 0, got {b}")
        coefs = []
        for e in _exponents(order, variables):
            ex, ey = e[0], e[1]
            et = e[2] if len(e) > 2 else 0
            base = (-1) ** (ey + 1) / (ey * b**ey)
            if et:
                coefs.append(0.0)
            elif ex == 0:
                coefs.append(a * base)
            elif ex == 1:
                coefs.append(base)
            else:
                coefs.append(0.0)
        centers = [a, b] + ([0.0] if "t" in variables else [])
        return cls(coefs + centers, order=order, variables=variables)
