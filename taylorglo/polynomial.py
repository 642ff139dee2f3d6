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
import operator
from collections.abc import Sequence
from fractions import Fraction
from functools import cache

__all__ = [
    "VARIABLE_SETS",
    "TaylorPolynomial",
    "canonical_basis",
    "canonical_coordinates",
    "canonical_dimension",
    "check_invariant",
    "from_canonical",
    "infer_order",
    "invariant_margin",
    "monomial_exponents",
    "parameter_count",
    "recenter",
    "to_factorial",
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


def _exponents(order: int, variables: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    # The tuples e with sum(e) <= order and e_y > 0 in base-(k+1) order, first variable most
    # significant: lexicographic, as extending the prefixes one variable at a time gives them.
    # Not cached: the loss calls this under torch.compile, where Dynamo warns about traced caches.
    exps: list[tuple[int, ...]] = [()]
    for v in variables:
        low = 1 if v == "y" else 0
        exps = [e + (p,) for e in exps for p in range(low, order + 1 - sum(e))]
    return tuple(exps)


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
    k, n = _check_order(order), len(variables)
    # tuples of n exponents with sum <= k, less those with e_y = 0 (n - 1 exponents with sum <= k)
    return math.comb(k + n, n) - math.comb(k + n - 1, n - 1) + n


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


# --------------------------------------------------------------------------------------------
# Binomial expansion: from the centered form to the power basis, written once


def binomial_expansion(p: int) -> list[tuple[int, int, int]]:
    """The terms of a binomial power as ``(r, C(p, r), p - r)`` for r = 0..p:

        (v + a)^p = sum_{r=0..p} C(p, r) a^(p - r) v^r.

    Every change of basis in the package is this expansion:

    - the centers: the polynomial is stored centered, f = sum_e theta_e prod_i (v_i - c_i)^{e_i}, and
      with a = -c_i each factor is sum_r C(e_i, r) (-c_i)^(e_i - r) v_i^r, so the coefficient of
      x^r y^s in the power basis is

          P[r][s] = sum_e theta_e (t - c_t)^{e_t} C(e_x, r) (-c_x)^(e_x - r) C(e_y, s) (-c_y)^(e_y - s)

      (the t factor only with the t variable; terms with r > e_x or s > e_y are absent).
      :meth:`TaylorPolynomial.power_basis` sums it in floats, :func:`expansion_tables` lays it out as
      tensors for the loss, ``_translate`` does it in exact fractions for any offsets;
    - label smoothing: x' = s x + u gives x'^i = sum_a C(i, a) s^a u^(i - a) x^a.
    """
    return [(r, math.comb(p, r), p - r) for r in range(p + 1)]


def expansion_tables(
    order: int, variables: Sequence[str]
) -> tuple[int, list[list[list[int]]], list[list[list[int]]], list[int] | None]:
    """The power-basis expansion of :func:`binomial_expansion` as rectangular tables, for tensor ops.

    For the n-th exponent tuple e_n of the vector layout (:func:`monomial_exponents`), an axis
    a in (0: x, 1: y) and each power r = 0..order:

        binomials[a][n][r] = C(e_n[a], r),  powers[a][n][r] = e_n[a] - r    (r <= e_n[a])
        binomials[a][n][r] = 0,             powers[a][n][r] = 0             (r > e_n[a]: no term)

    so that with theta the coefficients, c the centers and T_n = (t - c_t)^{t_exponents[n]} (1 without t):

        P[r][s] = sum_n theta_n T_n  binomials[0][n][r] (-c_x)^powers[0][n][r]
                                     binomials[1][n][s] (-c_y)^powers[1][n][s].

    Returns (the number of tuples, binomials, powers, t_exponents or None). Python lists, not cached:
    the loss builds its tensors from them, also while torch.compile traces it.
    """
    exps = monomial_exponents(order, variables)
    binomials: list[list[list[int]]] = []
    powers: list[list[list[int]]] = []
    for axis in (0, 1):
        b_rows, p_rows = [], []
        for e in exps:
            terms = binomial_expansion(e[axis])
            b_rows.append([terms[r][1] if r <= e[axis] else 0 for r in range(order + 1)])
            p_rows.append([terms[r][2] if r <= e[axis] else 0 for r in range(order + 1)])
        binomials.append(b_rows)
        powers.append(p_rows)
    t_exponents = [e[2] for e in exps] if len(variables) == 3 else None
    return len(exps), binomials, powers, t_exponents


class TaylorPolynomial:
    """A TaylorGLO polynomial f(x, y[, t]) given by its flat parameter vector.

    Args:
        params: the flat vector in the original TaylorGLO layout (coefficients, then centers).
        order: the polynomial order k; inferred from ``len(params)`` when omitted.
        variables: ``("x", "y")`` or ``("x", "y", "t")``.
    """

    def __init__(
        self, params: Sequence[float], order: int | None = None, variables: Sequence[str] = ("x", "y")
    ):
        self.variables = validate_variables(variables)
        if isinstance(params, str):
            raise TypeError(
                f"params must be a sequence of numbers, got the string {params!r}; "
                "split it first, e.g. [float(v) for v in text.split(',')]"
            )
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

    def __str__(self) -> str:
        return self.formula("text")

    def formula(self, style: str = "text", precision: int = 4) -> str:
        """The polynomial as a readable formula, centers substituted.

        ``style="text"`` gives e.g. ``1.5742 (y - 1.4872) - 1.4446 (y - 1.4872)^2 + ...``;
        ``style="latex"`` gives ``1.5742 \\left(y - 1.4872\\right) - 1.4446 \\left(y - 1.4872\\right)^{2} + ...``.

        Terms follow the vector order. Numbers are written with ``precision`` decimals, trailing
        zeros dropped; a nonzero number that would round to zero is written in scientific notation
        instead, so only coefficients that are exactly zero are omitted. A coefficient of magnitude
        1 is written as a sign only, a center of 0 as the bare variable (``x`` rather than
        ``(x - 0)``), a negative center as ``(y + 0.5)``. The zero polynomial is ``0``.
        """
        if style not in ("text", "latex"):
            raise ValueError(f"style must be 'text' or 'latex', got {style!r}")
        if isinstance(precision, bool) or not isinstance(precision, int) or precision < 0:
            raise ValueError(f"precision must be a non-negative integer, got {precision!r}")
        latex = style == "latex"
        bases = []
        for name, c in zip(self.variables, self.centers):
            if c == 0.0:
                bases.append((name, False))
                continue
            sign = "-" if c > 0 else "+"
            inner = f"{name} {sign} {_format_number(abs(c), precision, latex)}"
            bases.append((rf"\left({inner}\right)" if latex else f"({inner})", True))
        parts: list[str] = []
        for coef, e in zip(self.coefficients, self.exponents):
            if coef == 0.0:
                continue
            factors = []
            for (base, _), p in zip(bases, e):
                if p == 1:
                    factors.append(base)
                elif p > 1:
                    factors.append(f"{base}^{{{p}}}" if latex else f"{base}^{p}")
            magnitude = _format_number(abs(coef), precision, latex)
            body = " ".join(factors) if magnitude == "1" else " ".join([magnitude, *factors])
            if not parts:
                parts.append(f"-{body}" if coef < 0 else body)
            else:
                parts.append(f"- {body}" if coef < 0 else f"+ {body}")
        return " ".join(parts) if parts else "0"

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_factorial(
        cls, theta: Sequence[float], order: int | None = None, variables: Sequence[str] = ("x", "y")
    ) -> TaylorPolynomial:
        """Build a polynomial from the paper's factorial form (the inverse of :func:`to_factorial`).

        ``theta`` lists the centers first, then for each exponent tuple ``e`` in vector order the
        value ``theta_e = prod_i(e_i!) * coefficient_e``, so that
        ``f = sum_e theta_e / prod_i(e_i!) * prod_i (v_i - c_i)^{e_i}`` (a Taylor series written
        with its derivatives). For k=3, (x, y): theta = (a, b, v0, 2 v1, 6 v2, v3, 2 v4, 2 v5).
        """
        variables = validate_variables(variables)
        values = [float(v) for v in theta]
        if order is None:
            order = infer_order(len(values), variables)
        order = _check_order(order)
        expected = parameter_count(order, variables)
        if len(values) != expected:
            raise ValueError(
                f"a factorial-form vector of an order-{order} polynomial in {variables} has "
                f"{expected} numbers, got {len(values)}"
            )
        nv = len(variables)
        centers, scaled = values[:nv], values[nv:]
        coefs = [v / _factorial_weight(e) for v, e in zip(scaled, _exponents(order, variables))]
        return cls(coefs + centers, order=order, variables=variables)

    def to_factorial(self) -> tuple[float, ...]:
        """The paper's factorial form of this polynomial; see :func:`to_factorial`."""
        return self.centers + tuple(
            c * _factorial_weight(e) for c, e in zip(self.coefficients, self.exponents)
        )

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

        f(x, y) = sum_{i,j <= k} P[i][j] x^i y^j (the expansion of :func:`binomial_expansion`).
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
            for r, bx, qx in binomial_expansion(ex):
                ax = bx * (-cx) ** qx
                for s, by, qy in binomial_expansion(ey):
                    out[r][s] += coef * tfac * ax * by * (-cy) ** qy
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


# --------------------------------------------------------------------------------------------
# Formatting and small helpers


def _format_number(value: float, precision: int, latex: bool) -> str:
    """``value`` (>= 0) with ``precision`` decimals, trailing zeros dropped; scientific if it would read 0."""
    text = f"{value:.{precision}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if float(text) != 0.0 or value == 0.0:
        return text
    mantissa, exponent = f"{value:.{max(precision - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    power = int(exponent)
    return rf"{mantissa} \times 10^{{{power}}}" if latex else f"{mantissa}e{power}"


def _factorial_weight(e: Sequence[int]) -> int:
    return math.prod(math.factorial(p) for p in e)


def _as_polynomial(
    params: TaylorPolynomial | Sequence[float], order: int | None, variables: Sequence[str] | None
) -> TaylorPolynomial:
    """``params`` as a TaylorPolynomial; a given order or variables must agree with a polynomial's."""
    if isinstance(params, TaylorPolynomial):
        if order is not None and order != params.order:
            raise ValueError(f"order={order} disagrees with the polynomial's order {params.order}")
        if variables is not None and validate_variables(variables) != params.variables:
            raise ValueError(
                f"variables={tuple(variables)} disagree with the polynomial's variables {params.variables}"
            )
        return params
    return TaylorPolynomial(params, order=order, variables=("x", "y") if variables is None else variables)


def to_factorial(
    params: TaylorPolynomial | Sequence[float],
    order: int | None = None,
    variables: Sequence[str] | None = None,
) -> tuple[float, ...]:
    """Convert a vector (original layout) or polynomial to the paper's factorial form.

    The factorial form lists the centers first, then for each exponent tuple ``e`` (in vector
    order) ``theta_e = prod_i(e_i!) * coefficient_e``: the polynomial is then read as a Taylor
    series, ``f = sum_e theta_e / prod_i(e_i!) * prod_i (v_i - c_i)^{e_i}``. For k=3, (x, y) and
    the vector ``v`` (centers ``a = v[6]``, ``b = v[7]``) this is
    ``(a, b, v0, 2 v1, 6 v2, v3, 2 v4, 2 v5)`` as in Gonzalez & Miikkulainen (2021). The same rule
    applies to any order and to ``(x, y, t)``. Inverse: :meth:`TaylorPolynomial.from_factorial`.
    """
    return _as_polynomial(params, order, variables).to_factorial()


# --------------------------------------------------------------------------------------------
# Exact polynomial algebra on {exponent tuple: Fraction} dictionaries (power basis)

_Poly = dict  # dict[tuple[int, ...], Fraction]


def _translate(terms: _Poly, offsets: Sequence[Fraction]) -> _Poly:
    """Rewrite a polynomial in u as one in w where u_i = w_i + offsets_i (exact).

    u^e = prod_i sum_{r_i <= e_i} C(e_i, r_i) w_i^{r_i} offsets_i^{e_i - r_i} (:func:`binomial_expansion`).
    """
    out: _Poly = {}
    for e, coef in terms.items():
        if coef == 0:
            continue
        axes = [
            [(r, b * off**q) for r, b, q in binomial_expansion(p) if off != 0 or q == 0]
            for p, off in zip(e, offsets)
        ]
        for choice in itertools.product(*axes):
            key = tuple(r for r, _ in choice)
            value = coef
            for _, factor in choice:
                value *= factor
            out[key] = out.get(key, Fraction(0)) + value
    return out


def _power_terms(poly: TaylorPolynomial) -> _Poly:
    """f in the power basis of (x, y[, t]), exactly: the centers expanded with binomials."""
    centered = {e: Fraction(c) for e, c in zip(poly.exponents, poly.coefficients)}
    return _translate(centered, [-Fraction(c) for c in poly.centers])


def recenter(
    poly: TaylorPolynomial,
    centers: Sequence[float],
    order: int | None = None,
    variables: Sequence[str] | None = None,
) -> TaylorPolynomial:
    """``poly`` rewritten around new ``centers`` (one per variable of the result), exactly.

    The polynomial is expanded in the power basis and translated in exact arithmetic
    (:func:`binomial_expansion`), then read off in the result's layout: terms of total degree above
    ``order`` are truncated (none are when ``order >= poly.order``), and terms without y are
    dropped, as in every TaylorGLO polynomial (they do not change the gradient in y). ``order`` and
    ``variables`` default to the polynomial's. A variable of ``poly`` missing from ``variables``
    must not appear in it.
    """
    variables = poly.variables if variables is None else validate_variables(variables)
    order = poly.order if order is None else _check_order(order)
    if len(centers) != len(variables):
        raise ValueError(f"centers must give one value per variable of {variables}, got {len(centers)}")
    new_centers = [float(c) for c in centers]
    offsets = [Fraction(c) for c in new_centers] + [Fraction(0)] * (len(poly.variables) - len(variables))
    translated = _translate(_power_terms(poly), offsets[: len(poly.variables)])
    width = len(variables)
    terms: _Poly = {}
    for e, coef in translated.items():
        if coef == 0:
            continue
        if any(e[width:]):
            raise ValueError(
                f"the polynomial depends on {poly.variables[width]!r}, which is not among the variables {variables}"
            )
        key = e[:width] + (0,) * (width - len(e))
        terms[key] = terms.get(key, Fraction(0)) + coef
    coefs = [float(terms.get(e, Fraction(0))) for e in _exponents(order, variables)]
    return TaylorPolynomial(coefs + new_centers, order, variables)


def _derivative(terms: _Poly, axis: int) -> _Poly:
    """d/dv_axis of a power-basis polynomial."""
    out: _Poly = {}
    for e, coef in terms.items():
        if e[axis] > 0 and coef != 0:
            key = e[:axis] + (e[axis] - 1,) + e[axis + 1 :]
            out[key] = out.get(key, Fraction(0)) + coef * e[axis]
    return out


def _evaluate(terms: _Poly, point: Sequence[Fraction]) -> Fraction:
    total = Fraction(0)
    for e, coef in terms.items():
        value = coef
        for v, p in zip(point, e):
            if p:
                value *= v**p
        total += value
    return total


# --------------------------------------------------------------------------------------------
# Canonical coordinates: the numbers that training actually depends on

LABEL_KINDS = ("hard", "soft")


def _check_labels(labels: str) -> str:
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be 'hard' (x in {{0, 1}}) or 'soft' (x in [0, 1]), got {labels!r}")
    return labels


@cache
def _canonical_exponents(order: int, variables: tuple[str, ...], labels: str) -> tuple[tuple[int, ...], ...]:
    """Monomials of g = df/dy that carry canonical coordinates, in base-k order (x most significant).

    g has total degree <= k-1. Functions of t alone (x and y exponents both 0) are dropped: a
    per-step constant added to g does not change the gradient. With hard labels x^i = x on
    {0, 1}, so only x exponents 0 and 1 remain.
    """
    max_x = 1 if labels == "hard" else order - 1
    return tuple(
        e
        for e in itertools.product(range(order), repeat=len(variables))
        if sum(e) <= order - 1 and (e[0] > 0 or e[1] > 0) and e[0] <= max_x
    )


def canonical_basis(
    order: int, variables: Sequence[str] = ("x", "y"), labels: str = "hard"
) -> list[tuple[int, ...]]:
    """Exponent tuples of the monomials of g = df/dy whose coefficients are the canonical coordinates.

    Coordinate ``i`` of :func:`canonical_coordinates` is the coefficient of
    ``prod_v v^{e_v}`` (power basis, no centers) for ``e = canonical_basis(...)[i]``.

    >>> canonical_basis(3)
    [(0, 1), (0, 2), (1, 0), (1, 1)]
    >>> canonical_basis(3, labels="soft")
    [(0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]
    """
    return list(
        _canonical_exponents(_check_order(order), validate_variables(variables), _check_labels(labels))
    )


def canonical_dimension(order: int, variables: Sequence[str] = ("x", "y"), labels: str = "hard") -> int:
    """Number of directions of the parameter vector that change training (the canonical coordinates).

    ``(x, y)``: hard labels 2(k-1); soft labels k(k+1)/2 - 1 (k=2..5: 2, 5, 9, 14).
    ``(x, y, t)``: hard k(k-1); soft C(k+2, 3) - k (coefficients are polynomials in t).
    """
    return len(canonical_basis(order, variables, labels))


def canonical_coordinates(
    params: TaylorPolynomial | Sequence[float],
    order: int | None = None,
    variables: Sequence[str] | None = None,
    labels: str = "hard",
) -> tuple[float, ...]:
    """The numbers that determine the gradient of the loss with respect to the logits.

    With p = softmax(z) and g = df/dy, the gradient of the per-sample loss -sum_c f(x_c, p_c) is
    dL/dz_j = -p_j (g(x_j, p_j) - sum_c p_c g(x_c, p_c)), so training sees f only through g, and
    only up to a constant added to all classes of a sample. g is an arbitrary polynomial of total
    degree <= k-1; write it in the power basis, g = sum_{i,j} G_ij x^i y^j (centers expanded).

    * ``labels="soft"`` (x anywhere in [0, 1]): the coordinates are G_ij for i + j <= k-1 and
      (i, j) != (0, 0): the constant G_00 is removable, the x^i terms (i >= 1) are not.
      Count k(k+1)/2 - 1.
    * ``labels="hard"`` (x in {0, 1}; not valid for label smoothing, which moves the two label
      values): x^i = x there, so g = A(y) + x D(y) with A(y) = sum_j G_0j y^j and
      D(y) = g(1, y) - g(0, y) = sum_j (sum_{i>=1} G_ij) y^j of degree <= k-2. The coordinates are
      A's coefficients of y^1..y^{k-1} followed by D's of y^0..y^{k-2}. Count 2(k-1).
    * ``(x, y, t)``: t is a per-step parameter, so the coefficients are polynomials in t and what
      is removable is a function of t alone: the coordinates are the coefficients of x^i y^j t^l
      with (i, j) != (0, 0) (hard: i in {0, 1}, with i=1 collecting all i >= 1).

    The order is :func:`canonical_basis`. Two vectors with equal coordinates train identically;
    vectors that differ in a coordinate do not (in general). The computation is exact
    (rational arithmetic on the float inputs) and rounded once at the end.
    """
    poly = _as_polynomial(params, order, variables)
    labels = _check_labels(labels)
    g = _derivative(_power_terms(poly), poly.variables.index("y"))
    coords = []
    for e in _canonical_exponents(poly.order, poly.variables, labels):
        if labels == "hard" and e[0] == 1:
            value = sum((coef for key, coef in g.items() if key[0] >= 1 and key[1:] == e[1:]), Fraction(0))
        else:
            value = g.get(e, Fraction(0))
        coords.append(float(value))
    return tuple(coords)


def from_canonical(
    coords: Sequence[float],
    order: int,
    variables: Sequence[str] = ("x", "y"),
    labels: str = "hard",
    center: Sequence[float] | None = None,
) -> TaylorPolynomial:
    """A representative polynomial, in the original layout, whose canonical coordinates are ``coords``.

    g is built as the sum of ``coords[i]`` times the monomial ``canonical_basis(...)[i]`` (with
    hard labels the x-terms are kept at x^1), integrated in y with no y-free term
    (f = sum G_ij x^i y^{j+1} / (j+1)), and re-expanded around ``center`` (zeros by default; one
    value per variable). The y-free terms that re-centering produces are dropped: they do not
    depend on y, so g is unchanged. ``canonical_coordinates(from_canonical(c, ...))`` equals ``c``
    up to one rounding per number.
    """
    variables = validate_variables(variables)
    order = _check_order(order)
    labels = _check_labels(labels)
    basis = _canonical_exponents(order, variables, labels)
    values = [float(c) for c in coords]
    if len(values) != len(basis):
        raise ValueError(
            f"an order-{order} polynomial in {variables} has {len(basis)} canonical coordinates "
            f"for {labels} labels, got {len(values)}"
        )
    if center is None:
        center = [0.0] * len(variables)
    centers = [float(c) for c in center]
    if len(centers) != len(variables):
        raise ValueError(f"center must have one value per variable {variables}, got {tuple(center)}")
    for i, v in enumerate(values + centers):
        if not math.isfinite(v):
            raise ValueError(f"canonical coordinates and centers must be finite, got {v} at position {i}")
    y_axis = variables.index("y")
    f_power: _Poly = {}
    for e, c in zip(basis, values):
        key = e[:y_axis] + (e[y_axis] + 1,) + e[y_axis + 1 :]
        f_power[key] = Fraction(c) / key[y_axis]
    centered = _translate(f_power, [Fraction(c) for c in centers])
    coefs = [float(centered.get(e, Fraction(0))) for e in _exponents(order, variables)]
    return TaylorPolynomial(coefs + centers, order=order, variables=variables)


# --------------------------------------------------------------------------------------------
# The invariant: does the loss push the true class up at the uniform prediction?

INVARIANT_RULES = ("gradient", "original")


def invariant_margin(
    params: TaylorPolynomial | Sequence[float],
    num_classes: int,
    rule: str = "gradient",
    *,
    order: int | None = None,
    variables: Sequence[str] | None = None,
    t: float | None = None,
) -> float:
    """How far a polynomial satisfies the invariant (positive or zero: satisfied; see :func:`check_invariant`).

    With n = ``num_classes``, h = 1/n (the uniform prediction) and g = df/dy:

    * ``rule="gradient"``: g(1, h) - g(0, h), any order and variables (``t`` required with t).
      Positive iff the true class's logit rises at the uniform prediction: there
      dL/dz_j = -(1/n) (g_j - mean_c g_c), which for the target is -(n-1)/n^2 (g(1,h) - g(0,h)).
      It does not depend on the inert coefficient of (y - c_y).
    * ``rule="original"`` (k=3, (x, y) only): the original TaylorGLO formula, with
      p0 = a, p1 = b (the centers) and (p2..p7) = (v0..v5) (the coefficients):
      c1 = -2 p1 p3 + 2 p0 p1 p6 + p2 - p5 p0 + p7 p0^2 + 3 p4 p1^2,
      ch = 2 p3 - 2 p6 p0 - 6 p4 p1, chh = 3 p4, chy = 2 p6, cy = -2 p1 p6 + p5 - 2 p7 p0, cyy = p7;
      margin = cy + cyy + chy/n - (n - 2)(c1 + ch/n + chh/n^2), which equals
      g(1, h) - (n-1) g(0, h). It moves by -(n-2) d when d is added to the inert v0.

    Computed exactly (rational arithmetic on the float inputs), rounded once.
    """
    return float(_exact_margin(params, num_classes, rule, order, variables, t))


def _exact_margin(
    params: TaylorPolynomial | Sequence[float],
    num_classes: int,
    rule: str,
    order: int | None,
    variables: Sequence[str] | None,
    t: float | None,
) -> Fraction:
    if rule not in INVARIANT_RULES:
        raise ValueError(f"rule must be one of {list(INVARIANT_RULES)}, got {rule!r}")
    try:
        n = operator.index(num_classes)
    except TypeError:
        n = None
    if isinstance(num_classes, bool) or n is None or n < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    poly = _as_polynomial(params, order, variables)
    if rule == "original":
        if poly.order != 3 or poly.variables != ("x", "y"):
            raise ValueError(
                f"rule='original' is defined only for order 3 in ('x', 'y'), got order {poly.order} "
                f"in {poly.variables}; use rule='gradient'"
            )
        v = [Fraction(c) for c in poly.coefficients]
        p0, p1 = (Fraction(c) for c in poly.centers)
        p2, p3, p4, p5, p6, p7 = v
        c1 = -2 * p1 * p3 + 2 * p0 * p1 * p6 + p2 - p5 * p0 + p7 * p0**2 + 3 * p4 * p1**2
        ch = 2 * p3 - 2 * p6 * p0 - 6 * p4 * p1
        chh = 3 * p4
        chy = 2 * p6
        cy = -2 * p1 * p6 + p5 - 2 * p7 * p0
        cyy = p7
        return cy + cyy + chy / n - (n - 2) * (c1 + ch / n + chh / n**2)
    if poly.has_progress:
        if t is None:
            raise ValueError("this polynomial depends on the training progress t: pass t")
        if not math.isfinite(t):
            raise ValueError(f"t must be finite, got {t}")
        rest = [Fraction(t)]
    else:
        rest = []
    g = _derivative(_power_terms(poly), poly.variables.index("y"))
    h = Fraction(1, n)
    return _evaluate(g, [Fraction(1), h, *rest]) - _evaluate(g, [Fraction(0), h, *rest])


def check_invariant(
    params: TaylorPolynomial | Sequence[float],
    num_classes: int,
    rule: str = "gradient",
    *,
    order: int | None = None,
    variables: Sequence[str] | None = None,
    t: float | None = None,
) -> bool:
    """Whether a polynomial passes the invariant at ``num_classes`` classes.

    ``rule="gradient"`` (sound, any order): g(1, 1/n) > g(0, 1/n), i.e. at the uniform prediction of
    an untrained network the true class's logit is pushed up. ``rule="original"`` (k=3, (x, y)):
    the original system's test, violated iff cy + cyy + chy/n < (n - 2)(c1 + ch/n + chh/n^2),
    i.e. satisfied iff g(1, 1/n) >= (n-1) g(0, 1/n); it depends on the inert coefficient of
    (y - c_y). See :func:`invariant_margin` for the coefficients. Decided exactly.
    """
    margin = _exact_margin(params, num_classes, rule, order, variables, t)
    return margin > 0 if rule == "gradient" else margin >= 0
