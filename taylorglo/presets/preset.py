"""The preset document: a named Taylor loss as data (JSON), validated on load.

A preset is never code. Its document (schema version 1) has these top-level fields; only
``name`` and ``params`` are required, everything unknown is ``null`` or absent, never guessed::

    {
      "schema": 1,
      "name": "ce-taylor-3",                   # [a-z0-9][a-z0-9._-]*, at most 64 characters
      "description": "one line",
      "order": 3,                               # inferred from len(params) when omitted
      "variables": ["x", "y"],                  # or ["x", "y", "t"]
      "params": [...],                          # the flat vector, original TaylorGLO layout
      "formula": {"text": "...", "latex": "..."},   # informational; always re-rendered on output
      "provenance": {                           # where it was found
        "kind": "analytic" | "search" | "recorded" | "manual",
        "dataset": ..., "model": ..., "training_budget": {...}, "search_config": {...},
        "generations": int, "evaluations": int, "candidate": {...}, "experiment": str,
        "reference": str, "known": [str, ...], "unknown": [str, ...]
      },
      "results": {                              # measured results, or null when never measured
        "metric": "test_accuracy", "protocol": {...} | str,
        "preset": {"mean": float, "std": float | null, "n": int},
        "cross_entropy": {"mean": ..., "std": ..., "n": ...} | null,
        "p_value": float | null, "test": "welch" | ...
      },
      "invariant": {"num_classes": 10, "gradient": {"passes": bool, "margin": float},
                    "original": {...}},         # recomputed and checked on load
      "versions": {"taylorglo": "0.1.0", ...} | null,
      "date": "YYYY-MM-DD" | null,              # when it was found / measured
      "tags": [str, ...], "notes": [str, ...], "extra": {...}
    }

Unknown top-level fields are rejected (a typo must not silently drop metadata); free-form data
goes under ``extra``, and ``provenance`` keeps keys it does not know. Every error is a
:class:`PresetError` naming the preset, the field and the offending value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from taylorglo.polynomial import (
    TaylorPolynomial,
    check_invariant,
    infer_order,
    invariant_margin,
    parameter_count,
    validate_variables,
)

__all__ = ["SCHEMA_VERSION", "Preset", "PresetError", "invariant_summary"]

SCHEMA_VERSION = 1
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PROVENANCE_KINDS = ("analytic", "search", "recorded", "manual")
_FIELDS = (
    "schema",
    "name",
    "description",
    "order",
    "variables",
    "params",
    "formula",
    "provenance",
    "results",
    "invariant",
    "versions",
    "date",
    "tags",
    "notes",
    "extra",
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][0-9:.+\-Z]*)?$")


class PresetError(ValueError):
    """A malformed preset document; the message names the preset, the field and the value."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def invariant_summary(poly: TaylorPolynomial, num_classes: int = 10) -> dict:
    """Both invariant rules at ``num_classes`` (``original`` only for order 3 in (x, y)).

    ``{"num_classes": n, "gradient": {"passes": bool, "margin": float}, "original": {...}}``, see
    :func:`taylorglo.polynomial.check_invariant`. Polynomials with t are evaluated at t = 0, the
    start of training, where predictions are uniform (as the search does).
    """
    t = {"t": 0.0} if poly.has_progress else {}
    out: dict[str, Any] = {"num_classes": num_classes}
    rules = ["gradient"]
    if poly.order == 3 and poly.variables == ("x", "y"):
        rules.append("original")
    for rule in rules:
        out[rule] = {
            "passes": check_invariant(poly, num_classes, rule, **t),
            "margin": invariant_margin(poly, num_classes, rule, **t),
        }
    return out


@dataclass(frozen=True)
class Preset:
    """A validated preset. Build one with :meth:`from_dict` (or :func:`taylorglo.presets.get_preset`).

    Attributes:
        name: the registry name (``preset:NAME`` in loss specs).
        order, variables, params: the polynomial (``params`` in the original TaylorGLO layout).
        description, provenance, results, invariant, versions, date, tags, notes, extra: metadata
            as in the module docstring (``None`` / empty when unknown).
        source: where the document was loaded from (a file, an entry point, a ``register_preset``
            call); not part of the document.
    """

    name: str
    order: int
    variables: tuple[str, ...]
    params: tuple[float, ...]
    description: str = ""
    provenance: Optional[dict] = None
    results: Optional[dict] = None
    invariant: Optional[dict] = None
    versions: Optional[dict] = None
    date: Optional[str] = None
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    source: str = "<unknown>"

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "<unknown>") -> Preset:
        """Validate a preset document (a mapping, e.g. parsed JSON); raise :class:`PresetError`."""
        if isinstance(doc, Preset):
            return doc
        if not isinstance(doc, Mapping):
            raise PresetError(
                f"preset document from {source} must be a JSON object, got {type(doc).__name__}"
            )
        raw_name = doc.get("name")
        label = repr(raw_name) if isinstance(raw_name, str) else "<unnamed>"

        def bad(fld: str, msg: str) -> PresetError:
            return PresetError(f"preset {label} (from {source}): field {fld!r} {msg}")

        unknown = [k for k in doc if k not in _FIELDS]
        if unknown:
            raise bad(
                unknown[0],
                f"is not a preset field; known fields: {', '.join(_FIELDS)} (put free-form data in 'extra')",
            )
        schema = doc.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise bad("schema", f"is {schema!r}; this taylorglo reads schema {SCHEMA_VERSION}")
        if not isinstance(raw_name, str) or not NAME_PATTERN.match(raw_name):
            raise bad(
                "name",
                f"is {raw_name!r}; it must be a string of lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit, at most 64 characters",
            )
        name = raw_name

        variables = doc.get("variables", ["x", "y"])
        if isinstance(variables, str) or not isinstance(variables, Sequence):
            raise bad("variables", f"must be a list such as ['x', 'y'], got {variables!r}")
        try:
            variables = validate_variables(variables)
        except ValueError as e:
            raise bad("variables", str(e)) from None

        params = doc.get("params")
        if params is None:
            raise bad(
                "params", "is missing: the flat parameter vector (original TaylorGLO layout) is required"
            )
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            raise bad("params", f"must be a list of numbers, got {type(params).__name__}: {params!r}")
        for i, v in enumerate(params):
            if not _is_number(v) or not math.isfinite(v):
                raise bad("params", f"entry {i} is {v!r}; every parameter must be a finite number")
        params = tuple(float(v) for v in params)

        order = doc.get("order")
        if order is None:
            try:
                order = infer_order(len(params), variables)
            except ValueError as e:
                raise bad("params", f"has a wrong length: {e}") from None
        elif isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 20:
            raise bad("order", f"is {order!r}; it must be an integer in [1, 20]")
        elif len(params) != parameter_count(order, variables):
            raise bad(
                "params",
                f"has {len(params)} numbers, but an order-{order} polynomial in {variables} has "
                f"{parameter_count(order, variables)}",
            )
        poly = TaylorPolynomial(params, order, variables)

        description = doc.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise bad("description", f"must be a string, got {description!r}")

        formula = doc.get("formula")
        if formula is not None:
            if not isinstance(formula, Mapping) or any(
                k not in ("text", "latex") or not isinstance(v, str) for k, v in formula.items()
            ):
                raise bad("formula", f"must be {{'text': str, 'latex': str}}, got {formula!r}")

        provenance = _optional_mapping(doc, "provenance", bad)
        if provenance is not None:
            _check_provenance(provenance, bad)
        results = _optional_mapping(doc, "results", bad)
        if results is not None:
            _check_results(results, bad)
        invariant = _optional_mapping(doc, "invariant", bad)
        if invariant is not None:
            _check_invariant(invariant, poly, bad)
        versions = _optional_mapping(doc, "versions", bad)
        if versions is not None:
            for k, v in versions.items():
                if not isinstance(k, str) or not (v is None or isinstance(v, str)):
                    raise bad(
                        "versions", f"must map package names to version strings (or null), got {k!r}: {v!r}"
                    )
        date = doc.get("date")
        if date is not None and (not isinstance(date, str) or not _DATE.match(date)):
            raise bad("date", f"must be an ISO date 'YYYY-MM-DD' or null, got {date!r}")
        tags = _string_list(doc, "tags", bad)
        notes = _string_list(doc, "notes", bad)
        extra = doc.get("extra", {})
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise bad("extra", f"must be a JSON object, got {extra!r}")
        try:
            json.dumps(dict(extra), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise bad("extra", f"must be plain JSON data: {e}") from None

        return cls(
            name=name,
            order=order,
            variables=variables,
            params=params,
            description=description,
            provenance=_plain(provenance),
            results=_plain(results),
            invariant=_plain(invariant),
            versions=_plain(versions),
            date=date,
            tags=tags,
            notes=notes,
            extra=_plain(extra),
            source=str(source),
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<json>") -> Preset:
        """Parse and validate a JSON preset document."""
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise PresetError(f"preset document from {source} is not valid JSON: {e}") from None
        return cls.from_dict(doc, source=source)

    # ------------------------------------------------------------------------------------------
    @property
    def polynomial(self) -> TaylorPolynomial:
        return TaylorPolynomial(self.params, self.order, self.variables)

    @property
    def learning_rate(self) -> Optional[float]:
        """The learning rate the loss was found and measured with (``provenance.training_budget.lr``).

        With hard labels a loss's scale and the learning rate are one knob, so a found loss comes
        with its learning rate (searched, or the task's); None when the preset does not record one.
        """
        budget = (self.provenance or {}).get("training_budget") or {}
        lr = budget.get("lr")
        return float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None

    def formula(self, style: str = "text", precision: int = 4) -> str:
        """The polynomial's formula (``"text"`` or ``"latex"``), see ``TaylorPolynomial.formula``."""
        return self.polynomial.formula(style, precision)

    def to_dict(self) -> dict:
        """The JSON document (schema 1), formula re-rendered; ``from_dict(p.to_dict()) == p``."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "order": self.order,
            "variables": list(self.variables),
            "params": list(self.params),
            "formula": {"text": self.formula("text"), "latex": self.formula("latex")},
            "provenance": self.provenance,
            "results": self.results,
            "invariant": self.invariant,
            "versions": self.versions,
            "date": self.date,
            "tags": list(self.tags),
            "notes": list(self.notes),
        }
        if self.extra:
            out["extra"] = self.extra
        return out

    def to_json(self) -> str:
        """The document as indented JSON (floats written exactly, with ``repr``)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def __eq__(self, other: object) -> bool:  # the source is where it came from, not what it is
        if not isinstance(other, Preset):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.order, self.variables, self.params))

    def __repr__(self) -> str:
        return (
            f"Preset({self.name!r}, order={self.order}, variables={self.variables}, source={self.source!r})"
        )


# ----------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A deep copy as plain dicts/lists (JSON round trip), so presets never share mutable state."""
    if value is None:
        return None
    return json.loads(json.dumps(value, allow_nan=False))


def _optional_mapping(doc: Mapping, fld: str, bad) -> Optional[Mapping]:
    value = doc.get(fld)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise bad(fld, f"must be a JSON object or null, got {type(value).__name__}: {value!r}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise bad(fld, f"must be plain JSON data (finite numbers, strings, lists, objects): {e}") from None
    return value


def _string_list(doc: Mapping, fld: str, bad) -> tuple[str, ...]:
    value = doc.get(fld) or []
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(v, str) for v in value)
    ):
        raise bad(fld, f"must be a list of strings, got {value!r}")
    return tuple(value)


def _check_count(value: Any, fld: str, bad) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise bad(fld, f"must be a non-negative integer or null, got {value!r}")


def _check_provenance(prov: Mapping, bad) -> None:
    kind = prov.get("kind")
    if kind is not None and kind not in PROVENANCE_KINDS:
        raise bad("provenance.kind", f"is {kind!r}; expected one of {', '.join(PROVENANCE_KINDS)} or null")
    for key in ("dataset", "model", "experiment", "reference"):
        if prov.get(key) is not None and not isinstance(prov[key], str):
            raise bad(f"provenance.{key}", f"must be a string or null, got {prov[key]!r}")
    for key in ("generations", "evaluations"):
        _check_count(prov.get(key), f"provenance.{key}", bad)
    for key in ("training_budget", "search_config", "candidate"):
        if prov.get(key) is not None and not isinstance(prov[key], Mapping):
            raise bad(f"provenance.{key}", f"must be a JSON object or null, got {prov[key]!r}")
    for key in ("known", "unknown"):
        v = prov.get(key)
        if v is not None and (isinstance(v, str) or not all(isinstance(s, str) for s in v)):
            raise bad(f"provenance.{key}", f"must be a list of strings, got {v!r}")


def _check_stats(stats: Any, fld: str, bad) -> None:
    if not isinstance(stats, Mapping):
        raise bad(fld, f"must be {{'mean': float, 'std': float or null, 'n': int}}, got {stats!r}")
    mean, std, n = stats.get("mean"), stats.get("std"), stats.get("n")
    if not _is_number(mean) or not math.isfinite(mean):
        raise bad(f"{fld}.mean", f"must be a finite number, got {mean!r}")
    if std is not None and (not _is_number(std) or not math.isfinite(std) or std < 0):
        raise bad(f"{fld}.std", f"must be a finite number >= 0 or null, got {std!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise bad(f"{fld}.n", f"must be an integer >= 1 (the number of runs), got {n!r}")


def _check_results(res: Mapping, bad) -> None:
    metric = res.get("metric")
    if not isinstance(metric, str) or not metric:
        raise bad("results.metric", f"must name the measured metric (e.g. 'test_accuracy'), got {metric!r}")
    if "preset" not in res:
        raise bad("results.preset", "is missing: {'mean', 'std', 'n'} of the preset's runs")
    _check_stats(res["preset"], "results.preset", bad)
    if res.get("cross_entropy") is not None:
        _check_stats(res["cross_entropy"], "results.cross_entropy", bad)
    p = res.get("p_value")
    if p is not None and (not _is_number(p) or not 0.0 <= p <= 1.0):
        raise bad("results.p_value", f"must be a number in [0, 1] or null, got {p!r}")
    if p is not None and res.get("cross_entropy") is None:
        raise bad("results.p_value", "is given but there is no results.cross_entropy to compare with")


def _check_invariant(inv: Mapping, poly: TaylorPolynomial, bad) -> None:
    n = inv.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise bad("invariant.num_classes", f"must be an integer >= 2, got {n!r}")
    known = ("num_classes", "gradient", "original")
    for key in inv:
        if key not in known:
            raise bad(f"invariant.{key}", f"is not an invariant rule; known: {', '.join(known)}")
    truth = invariant_summary(poly, n)
    for rule in ("gradient", "original"):
        if rule not in inv:
            continue
        if rule not in truth:
            raise bad(
                f"invariant.{rule}", f"does not apply to an order-{poly.order} polynomial in {poly.variables}"
            )
        entry = inv[rule]
        if not isinstance(entry, Mapping) or not isinstance(entry.get("passes"), bool):
            raise bad(f"invariant.{rule}", f"must be {{'passes': bool, 'margin': float}}, got {entry!r}")
        if entry["passes"] != truth[rule]["passes"]:
            raise bad(
                f"invariant.{rule}.passes",
                f"is {entry['passes']} but the parameters give {truth[rule]['passes']} "
                f"(margin {truth[rule]['margin']:.6g} at n = {n})",
            )
        margin = entry.get("margin")
        if margin is not None:
            want = truth[rule]["margin"]
            if not _is_number(margin) or not math.isclose(margin, want, rel_tol=1e-6, abs_tol=1e-9):
                raise bad(f"invariant.{rule}.margin", f"is {margin!r} but the parameters give {want!r}")
