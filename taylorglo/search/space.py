"""Search spaces: where CMA-ES moves, and how its points become stored parameter vectors.

``original``: CMA-ES moves over the full TaylorGLO vector (coefficients, then centers), as the
original system did. ``canonical``: it moves only over the directions that change training
(2(k-1) of them for hard labels, see taylorglo.polynomial.canonical_dimension) and each point is turned into a vector in
the original layout by ``taylorglo.polynomial.from_canonical``. Candidates are always stored in the
original layout, so journals of both spaces read the same.

The invariant (``check_invariant``) is evaluated on the stored vector.
"""

from __future__ import annotations

from collections.abc import Sequence

from taylorglo.polynomial import TaylorPolynomial, parameter_count

__all__ = ["SearchSpace", "check_invariant"]


class SearchSpace:
    """The map between CMA-ES coordinates and parameter vectors for one (order, variables, space)."""

    def __init__(self, order: int, variables: Sequence[str] = ("x", "y"), space: str = "canonical"):
        self.order = int(order)
        self.variables = tuple(variables)
        self.space = space
        if space == "original":
            self.dimension = parameter_count(self.order, self.variables)
        elif space == "canonical":
            from taylorglo import polynomial

            if not hasattr(polynomial, "canonical_dimension"):
                raise RuntimeError(
                    "search.space = 'canonical' needs taylorglo.polynomial.canonical_dimension/"
                    "canonical_coordinates/from_canonical, which this taylorglo lacks; "
                    "use search.space = 'original'"
                )
            self.dimension = int(polynomial.canonical_dimension(self.order, self.variables, labels="hard"))
        else:
            raise ValueError(f"search space must be 'canonical' or 'original', got {space!r}")
        if self.dimension < 2:
            raise ValueError(
                f"the {space} space of an order-{self.order} polynomial has {self.dimension} dimension(s); "
                "CMA-ES needs at least 2: raise search.order"
            )

    def to_vector(self, coords: Sequence[float]) -> list[float]:
        """CMA-ES coordinates -> parameter vector in the original layout."""
        coords = [float(c) for c in coords]
        if self.space == "original":
            return coords
        from taylorglo.polynomial import from_canonical

        poly = from_canonical(coords, self.order, self.variables, labels="hard")
        return [float(v) for v in poly.vector]

    def to_coords(self, vector: Sequence[float]) -> list[float]:
        """Parameter vector -> CMA-ES coordinates (a projection for the canonical space)."""
        vector = [float(v) for v in vector]
        if self.space == "original":
            return vector
        from taylorglo.polynomial import canonical_coordinates

        return [float(c) for c in canonical_coordinates(vector, self.order, self.variables, labels="hard")]

    def start(self, kind: str) -> list[float]:
        """The start point in coordinates: ``zeros`` or the cross-entropy Taylor expansion."""
        if kind == "zeros":
            return [0.0] * self.dimension
        if kind == "cross-entropy":
            ce = TaylorPolynomial.cross_entropy(self.order, variables=self.variables)
            return self.to_coords(ce.vector)
        raise ValueError(f"start must be 'zeros' or 'cross-entropy', got {kind!r}")


def check_invariant(
    vector: Sequence[float], order: int, variables: Sequence[str], num_classes: int, rule: str
) -> bool:
    """Whether the loss passes the invariant at the uniform prediction 1/n (True = passes).

    Uses ``taylorglo.polynomial.check_invariant`` when present. The fallback, with g = df/dy:
    ``gradient``: g(1, 1/n) > g(0, 1/n) (the true class's logit rises; blind to the inert
    coefficient); ``original``: g(1, 1/n) >= (n - 1) g(0, 1/n) (the original system's rule).
    """
    from taylorglo import polynomial

    if hasattr(polynomial, "check_invariant"):
        try:
            return bool(polynomial.check_invariant(list(vector), num_classes, rule=rule))
        except TypeError:  # a different signature: fall back to our own statement of the rule
            pass
    poly = TaylorPolynomial(vector, order, variables)
    t = {"t": 0.0} if poly.has_progress else {}
    p = 1.0 / num_classes
    g1, g0 = poly.derivative_y(1.0, p, **t), poly.derivative_y(0.0, p, **t)
    if rule == "gradient":
        return g1 > g0
    if rule == "original":
        return g1 >= (num_classes - 1) * g0
    raise ValueError(f"invariant rule must be 'gradient' or 'original', got {rule!r}")
