"""Search spaces: where CMA-ES moves, and how its points become stored parameter vectors.

``original``: CMA-ES moves over the full TaylorGLO vector (coefficients, then centers), as the
original system did. ``canonical``: it moves only over the directions that change training
(2(k-1) of them for hard labels, see :func:`taylorglo.polynomial.canonical_dimension`); each point
is turned into a vector in the original layout by :func:`taylorglo.polynomial.from_canonical`.

``normalized``: the canonical coordinates with the loss's overall scale taken out. With hard
labels and no weight decay, multiplying the loss by c is the same as multiplying the learning
rate by c, so a space that can rescale the loss has one direction that only moves the effective
learning rate; CMA-ES drifts along it (sigma grows, the search does not converge) and one-seed
fitness rewards large scales until trainings collapse. Two ways to take it out
(``search.normalization``):

* ``"norm"`` (the default): CMA-ES moves over all d canonical coordinates and each point is
  rescaled so that its push curve p (1 - p) D(p), p in [0, 1], has cross-entropy's
  root-mean-square (1 - p for CE) on a fixed grid. The radial direction of the CMA-ES space is
  then inert. Measured on digits (benchmarks/search/robust_search/compare_spaces.py: order 3, 2 seeds
  per candidate, 8 x 15 generations): sigma stayed within 1.27-1.58, against 1.1 -> 3.3 with
  ``push`` and 1.2 -> 25 in the canonical space with a fixed learning rate.
* ``"push"`` (a linear constraint): with g = df/dy and D(p) = g(1, p) - g(0, p), the
  push on the true logit at the uniform prediction p = 1/n is (1/n)(1 - 1/n) D(1/n). It is held at
  cross-entropy's, D(1/n) = n (for f = x log y, g = x / y). D(1/n) is linear in the canonical
  coordinates c (D's coefficients are a block of c): w . c = n. CMA-ES moves over the d - 1
  coordinates u of the hyperplane, c = c0 + P u with c0 = n w / |w|^2 its point nearest the origin
  and P an orthonormal basis of w's complement (a Householder reflection). Every point passes the
  ``gradient`` invariant by construction. With t the constraint holds at t = 0 (the start of
  training, where predictions are uniform). It fixes the push at p = 1/n only: D elsewhere and
  A (the non-target part of g) keep their scale, which is why sigma still grew.

A searched learning rate (``search.learning_rate = "searched"``) adds one last coordinate,
ln(lr), clipped to ``search.lr_bounds`` (with a small quadratic penalty outside them, told to
CMA-ES only, see ``SearchSpace.bound_excess``).

Candidates are always stored in the original layout (plus their learning rate), so journals of
every space read the same. The invariant is evaluated on the stored vector, at t = 0 with t.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from taylorglo.polynomial import (
    TaylorPolynomial,
    canonical_basis,
    canonical_coordinates,
    check_invariant,
    from_canonical,
    invariant_margin,
    parameter_count,
)

__all__ = [
    "LR_BOUND_PENALTY",
    "NORMALIZATIONS",
    "SPACES",
    "START_LOSS_PREFIX",
    "SearchSpace",
    "candidate_invariant",
    "push_scale",
]

SPACES = ("canonical", "normalized", "original")
# Added to the told fitness per squared unit of ln(lr) outside the bounds (fitness is in [0, 1]).
LR_BOUND_PENALTY = 0.1
NORMALIZATIONS = ("push", "norm")
# ``search.start = "loss:SPEC"``: start from the Taylor expansion of the trainer loss SPEC.
START_LOSS_PREFIX = "loss:"
# The grid of the ``norm`` normalization: midpoints of 64 equal cells of [0, 1].
_NORM_GRID = [(i + 0.5) / 64 for i in range(64)]


def _t_kwargs(variables: Sequence[str]) -> dict:
    return {"t": 0.0} if "t" in variables else {}


def candidate_invariant(
    vector: Sequence[float], order: int, variables: Sequence[str], num_classes: int, rule: str
) -> bool:
    """Whether a stored vector passes the invariant (at t = 0 for losses with the progress variable)."""
    return bool(
        check_invariant(
            list(vector), num_classes, rule, order=order, variables=tuple(variables), **_t_kwargs(variables)
        )
    )


def push_scale(vector: Sequence[float], order: int, variables: Sequence[str], num_classes: int) -> float:
    """The push on the true logit at the uniform prediction, relative to cross-entropy's (1.0 for CE).

    D(1/n) / n with D(p) = g(1, p) - g(0, p), g = df/dy, at t = 0: under SGD without weight decay
    the loss's scale acts as a learning-rate multiplier, and this is that multiplier at the start.
    """
    margin = invariant_margin(
        list(vector), num_classes, "gradient", order=order, variables=tuple(variables), **_t_kwargs(variables)
    )
    return margin / num_classes


class SearchSpace:
    """The map between CMA-ES coordinates and (parameter vector, learning rate) for one search.

    Args:
        order, variables: the polynomial.
        space: ``"canonical"``, ``"normalized"`` or ``"original"`` (see the module docstring).
        num_classes: n, needed by the ``normalized`` space (the uniform prediction is 1/n).
        normalization: ``"norm"`` or ``"push"`` (``normalized`` space only).
        lr_bounds: ``(lo, hi)`` to search the learning rate as a last coordinate ln(lr); None = fixed.
    """

    def __init__(
        self,
        order: int,
        variables: Sequence[str] = ("x", "y"),
        space: str = "canonical",
        *,
        num_classes: int = 0,
        normalization: str = "norm",
        lr_bounds: Sequence[float] | None = None,
    ):
        self.order = int(order)
        self.variables = tuple(variables)
        self.space = space
        self.num_classes = int(num_classes)
        self.normalization = normalization
        self.lr_bounds = None if lr_bounds is None else (float(lr_bounds[0]), float(lr_bounds[1]))
        if space not in SPACES:
            raise ValueError(f"search space must be one of {', '.join(SPACES)}, got {space!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be 'push' or 'norm', got {normalization!r}")
        if self.lr_bounds is not None:
            lo, hi = self.lr_bounds
            if not (0 < lo < hi and math.isfinite(hi)):
                raise ValueError(f"lr_bounds must be 0 < lo < hi, got {list(self.lr_bounds)}")
        if space == "original":
            self.poly_dimension = parameter_count(self.order, self.variables)
        else:
            self._basis = canonical_basis(self.order, self.variables, labels="hard")
            d = len(self._basis)
            if space == "normalized":
                if self.num_classes < 2:
                    raise ValueError("the normalized space needs the class count (num_classes >= 2)")
                self._setup_normalized()
                d = d - 1 if normalization == "push" else d
            self.poly_dimension = d
        self.dimension = self.poly_dimension + (1 if self.lr_bounds is not None else 0)
        if self.dimension < 2:
            raise ValueError(
                f"the {space} space of an order-{self.order} polynomial in {self.variables} has "
                f"{self.dimension} dimension(s); CMA-ES needs at least 2: raise search.order"
                + (" or search the learning rate" if self.lr_bounds is None else "")
            )

    # --- the normalized space ------------------------------------------------------------------
    def _setup_normalized(self) -> None:
        n = self.num_classes
        h = 1.0 / n
        # D(1/n) = sum over the x-terms of the basis of c_e h^{e_y} (t = 0 keeps only e_t = 0)
        w = []
        for e in self._basis:
            t_free = len(e) < 3 or e[2] == 0
            w.append(h ** e[1] if e[0] == 1 and t_free else 0.0)
        self._w = w
        norm2 = sum(v * v for v in w)
        self._c0 = [n * v / norm2 for v in w]
        # Householder reflection H = I - 2 v v^T / v^T v mapping e_0 onto w / |w|; its columns
        # 1..d-1 are an orthonormal basis of w's complement.
        wn = math.sqrt(norm2)
        unit = [v / wn for v in w]
        v = [u - (1.0 if i == 0 else 0.0) for i, u in enumerate(unit)]
        vv = sum(x * x for x in v)
        d = len(w)
        if vv < 1e-30:  # w / |w| is e_0 already
            self._complement = [[1.0 if r == c else 0.0 for r in range(d)] for c in range(1, d)]
        else:
            self._complement = [
                [(1.0 if r == c else 0.0) - 2.0 * v[r] * v[c] / vv for r in range(d)] for c in range(1, d)
            ]
        # The push curve's samples are linear in c: curve_i = sum_e M_ie c_e (x-terms, t = 0).
        self._curve = [
            [
                (p ** (e[1] + 1) * (1.0 - p) if e[0] == 1 and (len(e) < 3 or e[2] == 0) else 0.0)
                for e in self._basis
            ]
            for p in _NORM_GRID
        ]
        self._ce_rms = math.sqrt(sum((1.0 - p) ** 2 for p in _NORM_GRID) / len(_NORM_GRID))

    def _push_rms(self, c: Sequence[float]) -> float:
        return math.sqrt(
            sum(sum(m * x for m, x in zip(row, c)) ** 2 for row in self._curve) / len(self._curve)
        )

    def _canonical_from_coords(self, u: Sequence[float]) -> list[float]:
        if self.space == "canonical":
            return list(u)
        if self.normalization == "push":
            c = list(self._c0)
            for coef, col in zip(u, self._complement):
                for r in range(len(c)):
                    c[r] += coef * col[r]
            return c
        rms = self._push_rms(u)
        if not rms > 0:  # no push at all: left as it is (the invariant rejects it)
            return list(u)
        return [x * self._ce_rms / rms for x in u]

    def _coords_from_canonical(self, c: Sequence[float]) -> list[float]:
        if self.space == "canonical" or self.normalization == "norm":
            return list(c)
        diff = [x - y for x, y in zip(c, self._c0)]  # projected onto the hyperplane
        return [sum(col[r] * diff[r] for r in range(len(diff))) for col in self._complement]

    # --- the maps -----------------------------------------------------------------------------
    def to_vector(self, coords: Sequence[float]) -> list[float]:
        """CMA-ES coordinates (the learning-rate coordinate, if any, is ignored) -> parameter vector."""
        poly = [float(c) for c in coords[: self.poly_dimension]]
        if self.space == "original":
            return poly
        canonical = self._canonical_from_coords(poly)
        return [float(v) for v in from_canonical(canonical, self.order, self.variables, labels="hard").vector]

    def learning_rate(self, coords: Sequence[float]) -> float | None:
        """The learning rate a point carries (clipped to the bounds), or None when it is fixed."""
        if self.lr_bounds is None:
            return None
        lo, hi = self.lr_bounds
        return float(min(max(math.exp(float(coords[self.poly_dimension])), lo), hi))

    def decode(self, coords: Sequence[float]) -> tuple[list[float], float | None]:
        """CMA-ES coordinates -> (parameter vector in the original layout, learning rate or None)."""
        return self.to_vector(coords), self.learning_rate(coords)

    def to_coords(self, vector: Sequence[float], lr: float | None = None) -> list[float]:
        """Parameter vector (and learning rate) -> CMA-ES coordinates (a projection where needed).

        In the ``normalized`` space the point decodes to the vector rescaled by some c > 0 (to
        cross-entropy's push norm, or onto the push constraint). Under SGD without weight decay
        a loss scaled by c at learning rate lr / c trains exactly as the loss at lr, so a searched
        learning rate is scaled by that c as well: ``decode(to_coords(v, lr))`` trains as (v, lr)
        does (up to the lr bounds' clipping). The ``push`` space scales only a vector with a
        positive push at the uniform prediction; another is projected onto the constraint.
        """
        vector = [float(v) for v in vector]
        factor = 1.0  # the decoded loss's scale relative to ``vector``'s
        if self.space == "original":
            coords = vector
        else:
            canonical = [
                float(c) for c in canonical_coordinates(vector, self.order, self.variables, labels="hard")
            ]
            if self.space == "normalized":
                factor = self._normalizing_factor(canonical)
                canonical = [c * factor for c in canonical]
            coords = self._coords_from_canonical(canonical)
        if self.lr_bounds is not None:
            lo, hi = self.lr_bounds
            lr = math.sqrt(lo * hi) if lr is None else min(max(float(lr) / factor, lo), hi)
            coords = coords + [math.log(lr)]
        return coords

    def _normalizing_factor(self, canonical: Sequence[float]) -> float:
        """c > 0 with ``c * canonical`` normalized (1.0 where no positive factor normalizes it)."""
        if self.normalization == "push":
            push = sum(w * x for w, x in zip(self._w, canonical))
            return self.num_classes / push if push > 0 else 1.0
        rms = self._push_rms(canonical)
        return self._ce_rms / rms if rms > 0 else 1.0

    def start(self, kind: str, lr: float | None = None) -> list[float]:
        """The start point (and ln(lr), clipped to the bounds): ``zeros``, ``cross-entropy`` (its
        Taylor expansion at (0.5, 0.5)) or ``loss:SPEC``, the expansion of any trainer loss spec, e.g.
        ``loss:gce:q=0.4`` or ``loss:sce:alpha=0.1,beta=1.0``: a search that starts from the
        baseline it has to beat. ``lr`` is the learning rate the start loss is meant to train at
        (e.g. the baseline's tuned one); a normalized space rescales it with the loss
        (:meth:`to_coords`)."""
        if kind == "zeros":
            coords = [0.0] * self.poly_dimension
            if self.lr_bounds is not None:
                lo, hi = self.lr_bounds
                coords.append(math.log(math.sqrt(lo * hi) if lr is None else min(max(float(lr), lo), hi)))
            return coords
        if kind == "cross-entropy":
            ce = TaylorPolynomial.cross_entropy(self.order, variables=self.variables)
            return self.to_coords(ce.vector, lr)
        if isinstance(kind, str) and kind.startswith(START_LOSS_PREFIX):
            return self.to_coords(self.start_polynomial(kind).vector, lr)
        raise ValueError(
            f"start must be 'zeros', 'cross-entropy' or '{START_LOSS_PREFIX}SPEC' (a trainer loss spec), "
            f"got {kind!r}"
        )

    def start_polynomial(self, kind: str) -> TaylorPolynomial:
        """The polynomial of a ``loss:SPEC`` start: the loss's expansion at (0.5, 0.5) in this
        space's order and variables (:func:`taylorglo.train.expansion.expand_loss`).

        Raises ValueError naming the spec when it cannot be parsed or expanded.
        """
        from taylorglo.train.expansion import expand_loss

        return expand_loss(
            kind[len(START_LOSS_PREFIX) :], self.order, self.variables, num_classes=self.num_classes
        )

    def bound_excess(self, coords: Sequence[float]) -> float:
        """How far (in ln(lr)) a point's learning-rate coordinate lies outside the bounds; 0 inside.

        The learning rate is clipped to the bounds, so CMA-ES sees a flat fitness beyond them; the
        search adds ``LR_BOUND_PENALTY * excess**2`` to the fitness it tells CMA-ES (not to the
        journal's) so that the mean does not wander off along that plateau.
        """
        if self.lr_bounds is None:
            return 0.0
        lo, hi = (math.log(b) for b in self.lr_bounds)
        u = float(coords[self.poly_dimension])
        return max(lo - u, 0.0, u - hi)
