"""Loss specs: the one place where training learns which loss to use.

A :class:`LossSpec` names a loss in a form that survives JSON, command lines and journals:

- ``cross-entropy`` (the baseline; ``cross-entropy;label_smoothing=0.1`` with smoothing),
- ``params:v1,v2,...`` a TaylorGLO parameter vector (the original TaylorGLO layout, see taylorglo.polynomial), optionally followed
  by ``;order=K`` and ``;variables=x,y,t`` (order is inferred from the length when omitted; the
  variables default to ``x,y``),
- ``preset:NAME`` a named loss from :mod:`taylorglo.presets`,
- the robust-loss baselines of :mod:`taylorglo.train.robust_losses`: ``gce:q=0.7`` (generalized
  cross-entropy, q in (0, 1], default 0.7), ``sce:alpha=0.1,beta=1.0`` (symmetric cross-entropy;
  defaults alpha 0.1, beta 1.0 and the clamped log 0 ``A=-4``) and ``mae``; a bare ``gce`` or
  ``sce`` takes the defaults, and ``str`` writes every option.

``str(spec)`` writes each number with ``repr`` (the shortest string that reads back to the same
float), so ``LossSpec.parse(str(spec)) == spec`` exactly; the original system rounded vectors to 4
decimals and ``eval``-ed them as source code. :func:`build_loss` turns a spec into an ``nn.Module``
with ``forward(logits, target)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from taylorglo.polynomial import infer_order, parameter_count, validate_variables
from taylorglo.train.robust_losses import ROBUST_LOSSES, robust_loss_options

__all__ = ["LOSS_KINDS", "LossSpec", "build_loss"]

ROBUST_KINDS: tuple[str, ...] = tuple(ROBUST_LOSSES)
LOSS_KINDS: tuple[str, ...] = ("cross-entropy", "taylor", "preset", *ROBUST_KINDS)
_CE_ALIASES = ("cross-entropy", "cross_entropy", "crossentropy", "ce")


@dataclass(frozen=True)
class LossSpec:
    """A loss by description.

    Attributes:
        kind: ``cross-entropy``, ``taylor`` (a parameter vector), ``preset``, or a robust loss:
            ``gce``, ``sce``, ``mae``.
        params: the flat TaylorGLO vector (``taylor`` only).
        order: the polynomial order (``taylor`` only; inferred from ``params`` when not given).
        variables: ``("x", "y")`` or ``("x", "y", "t")`` (``taylor`` only).
        name: the preset name (``preset`` only).
        options: a robust loss's options as ``(key, value)`` pairs, all of them, defaults filled in
            (``gce``: q; ``sce``: alpha, beta, A; ``mae``: none). A mapping is accepted.
        label_smoothing: smoothing for this loss; ``None`` lets ``build_loss`` use its default
            (the config's ``label_smoothing`` for cross-entropy, 0 otherwise).
    """

    kind: str = "cross-entropy"
    params: Optional[tuple[float, ...]] = None
    order: Optional[int] = None
    variables: Optional[tuple[str, ...]] = None
    name: Optional[str] = None
    label_smoothing: Optional[float] = None
    options: Optional[tuple[tuple[str, float], ...]] = None

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"LossSpec.kind must be one of {list(LOSS_KINDS)}, got {self.kind!r}")
        if self.label_smoothing is not None:
            ls = self.label_smoothing
            if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0.0 <= ls < 1.0:
                raise ValueError(f"label_smoothing must be a number in [0, 1), got {ls!r}")
            object.__setattr__(self, "label_smoothing", float(ls))
        if self.kind == "taylor":
            if self.params is None:
                raise ValueError("a taylor LossSpec needs params")
            params = tuple(float(v) for v in self.params)
            for i, v in enumerate(params):
                if not math.isfinite(v):
                    raise ValueError(f"loss parameter {i} is {v}: parameters must be finite")
            variables = validate_variables(self.variables if self.variables is not None else ("x", "y"))
            order = self.order if self.order is not None else infer_order(len(params), variables)
            if isinstance(order, bool) or not isinstance(order, int):
                raise ValueError(f"order must be an integer, got {order!r}")
            expected = parameter_count(order, variables)
            if len(params) != expected:
                raise ValueError(
                    f"an order-{order} polynomial in {variables} has {expected} parameters, got {len(params)}"
                )
            object.__setattr__(self, "params", params)
            object.__setattr__(self, "order", order)
            object.__setattr__(self, "variables", variables)
        else:
            extra = [f for f in ("params", "order", "variables") if getattr(self, f) is not None]
            if extra:
                raise ValueError(f"a {self.kind} LossSpec takes no {', '.join(extra)}")
        if self.kind in ROBUST_KINDS:
            if self.label_smoothing is not None:
                raise ValueError(f"a {self.kind} LossSpec takes no label_smoothing")
            given = dict(self.options or ())
            try:
                options = robust_loss_options(self.kind, given)
            except ValueError as e:
                shown = ",".join(f"{k}={v!r}" for k, v in given.items())
                raise ValueError(f"loss {self.kind}{':' + shown if shown else ''} is invalid: {e}") from None
            object.__setattr__(self, "options", tuple(options.items()))
        elif self.options is not None:
            raise ValueError(f"a {self.kind} LossSpec takes no options")
        if self.kind == "preset":
            if not isinstance(self.name, str) or not self.name.strip() or any(c in self.name for c in ";,:"):
                raise ValueError(f"a preset LossSpec needs a name without ';', ',' or ':', got {self.name!r}")
            object.__setattr__(self, "name", self.name.strip())
        elif self.name is not None:
            raise ValueError(
                f"only a preset LossSpec has a name, got name={self.name!r} for kind {self.kind!r}"
            )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def cross_entropy(cls, label_smoothing: Optional[float] = None) -> LossSpec:
        return cls("cross-entropy", label_smoothing=label_smoothing)

    @classmethod
    def taylor(
        cls,
        params: Sequence[float] | torch.Tensor,
        order: Optional[int] = None,
        variables: Sequence[str] = ("x", "y"),
        label_smoothing: Optional[float] = None,
    ) -> LossSpec:
        """A TaylorGLO parameter vector (a sequence, numpy array or 1-D tensor)."""
        if isinstance(params, torch.Tensor):
            params = params.detach().cpu().reshape(-1).tolist()
        return cls(
            "taylor",
            params=tuple(float(v) for v in params),
            order=order,
            variables=tuple(variables),
            label_smoothing=label_smoothing,
        )

    @classmethod
    def preset(cls, name: str, label_smoothing: Optional[float] = None) -> LossSpec:
        return cls("preset", name=name, label_smoothing=label_smoothing)

    @classmethod
    def robust(cls, kind: str, **options: float) -> LossSpec:
        """A robust-loss baseline: ``robust("gce", q=0.5)``, ``robust("sce", beta=0.5)``, ``robust("mae")``."""
        return cls(kind, options=tuple(options.items()))

    @classmethod
    def parse(cls, text: str | LossSpec) -> LossSpec:
        """Read ``cross-entropy``, ``preset:NAME``, ``params:v1,v2,...[;order=K][;variables=x,y,t]``,
        ``gce[:q=Q]``, ``sce[:alpha=A,beta=B[,A=L]]`` or ``mae``.

        The first three may end with ``;label_smoothing=S``. A LossSpec is returned unchanged.
        """
        if isinstance(text, LossSpec):
            return text
        if not isinstance(text, str):
            raise ValueError(f"a loss spec is a string or LossSpec, got {type(text).__name__}: {text!r}")
        head, *options = [part.strip() for part in text.strip().split(";")]
        opts: dict[str, str] = {}
        for opt in options:
            key, sep, value = opt.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("order", "variables", "label_smoothing") or key in opts:
                raise ValueError(
                    f"bad option {opt!r} in loss spec {text!r}; options are ;order=K, ;variables=x,y[,t] "
                    "and ;label_smoothing=S, each at most once"
                )
            opts[key] = value.strip()
        smoothing = _parse_float(opts.pop("label_smoothing"), text) if "label_smoothing" in opts else None
        kind, colon, rest = head.partition(":")
        kind = kind.strip().lower()
        if not colon and kind in _CE_ALIASES:
            if opts:
                raise ValueError(f"cross-entropy takes no {', '.join(opts)} (in loss spec {text!r})")
            return cls.cross_entropy(smoothing)
        if colon and kind == "preset":
            if opts:
                raise ValueError(f"a preset takes no {', '.join(opts)} (in loss spec {text!r})")
            return cls.preset(rest, smoothing)
        if colon and kind in ("params", "taylor"):
            values = [_parse_float(v, text) for v in rest.split(",") if v.strip()] if rest.strip() else []
            if not values:
                raise ValueError(f"no numbers after 'params:' in loss spec {text!r}")
            order = None
            if "order" in opts:
                try:
                    order = int(opts["order"])
                except ValueError:
                    raise ValueError(f"order must be an integer, got {opts['order']!r} in {text!r}") from None
            variables = (
                tuple(v.strip() for v in opts["variables"].split(",")) if "variables" in opts else ("x", "y")
            )
            return cls.taylor(values, order=order, variables=variables, label_smoothing=smoothing)
        if kind in ROBUST_KINDS:
            if opts or smoothing is not None:
                raise ValueError(
                    f"{kind} takes no ;options (in loss spec {text!r}); write {kind}:key=value,..."
                )
            return cls(kind, options=_parse_robust_options(kind, rest, text))
        raise ValueError(
            f"cannot read loss spec {text!r}: expected 'cross-entropy', 'preset:NAME', 'params:v1,v2,...', "
            "'gce:q=Q', 'sce:alpha=A,beta=B' or 'mae'"
        )

    @classmethod
    def coerce(cls, spec: LossSpec | str | Mapping[str, Any]) -> LossSpec:
        """A LossSpec from a LossSpec, a spec string or a ``to_dict`` mapping."""
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        return cls.parse(spec)

    def __str__(self) -> str:
        if self.kind == "cross-entropy":
            out = "cross-entropy"
        elif self.kind == "preset":
            out = f"preset:{self.name}"
        elif self.kind in ROBUST_KINDS:
            out = self.kind + (":" + ",".join(f"{k}={v!r}" for k, v in self.options) if self.options else "")
        else:
            out = "params:" + ",".join(repr(v) for v in self.params)
            if self.order != infer_order_or_none(len(self.params), self.variables):
                out += f";order={self.order}"
            if self.variables != ("x", "y"):
                out += ";variables=" + ",".join(self.variables)
        if self.label_smoothing is not None:
            out += f";label_smoothing={self.label_smoothing!r}"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly; fields that do not apply to the kind are left out."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "taylor":
            out.update(params=list(self.params), order=self.order, variables=list(self.variables))
        if self.kind == "preset":
            out["name"] = self.name
        if self.kind in ROBUST_KINDS:
            out["options"] = dict(self.options)
        if self.label_smoothing is not None:
            out["label_smoothing"] = self.label_smoothing
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossSpec:
        known = ("kind", "params", "order", "variables", "name", "label_smoothing", "options")
        for key in d:
            if key not in known:
                raise ValueError(f"unknown LossSpec key {key!r}; known keys: {', '.join(known)}")
        d = dict(d)
        if d.get("params") is not None:
            d["params"] = tuple(d["params"])
        if d.get("variables") is not None:
            d["variables"] = tuple(d["variables"])
        if isinstance(d.get("options"), Mapping):
            d["options"] = tuple(d["options"].items())
        return cls(**d)

    @property
    def has_progress(self) -> bool:
        """Whether the loss depends on the training progress t (known without building it for taylor specs)."""
        return self.kind == "taylor" and "t" in self.variables


def infer_order_or_none(length: int, variables: Sequence[str]) -> Optional[int]:
    try:
        return infer_order(length, variables)
    except ValueError:
        return None


def _parse_robust_options(kind: str, text: str, spec: str) -> tuple[tuple[str, float], ...]:
    """``key=value,...`` after ``gce:`` / ``sce:`` (keys case-insensitive; ``A`` stays upper case)."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        key = "A" if key in ("A", "a") else key.lower()
        if not sep or not key or key in out:
            raise ValueError(
                f"bad option {item!r} in loss spec {spec!r}; write {kind}:key=value,... with each key once"
            )
        out[key] = _parse_float(value, spec)
    return tuple(out.items())


def _parse_float(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number (in loss spec {spec!r})") from None


# ----------------------------------------------------------------------------------------------
def build_loss(spec: LossSpec | str, num_classes: int, *, default_label_smoothing: float = 0.0) -> nn.Module:
    """Build the loss module of ``spec``: ``forward(logits (N, C), target (N,)) -> scalar``.

    ``default_label_smoothing`` applies to cross-entropy when the spec sets none (the config's
    ``label_smoothing``); Taylor and preset losses use the spec's smoothing or none; the robust
    losses (``gce``, ``sce``, ``mae``: :mod:`taylorglo.train.robust_losses`) never smooth. Modules of
    time-varying losses have ``has_progress`` True and a ``set_progress(t)`` method.

    Raises ValueError for a spec that cannot be built (an unknown preset).
    """
    spec = LossSpec.coerce(spec)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if spec.kind in ROBUST_KINDS:
        return ROBUST_LOSSES[spec.kind](**dict(spec.options))
    if spec.kind == "cross-entropy":
        ls = spec.label_smoothing if spec.label_smoothing is not None else default_label_smoothing
        return nn.CrossEntropyLoss(label_smoothing=ls)
    from taylorglo.loss import TaylorLoss  # here: train uses the loss only through this function

    ls = spec.label_smoothing or 0.0
    if spec.kind == "taylor":
        return TaylorLoss(list(spec.params), order=spec.order, variables=spec.variables, label_smoothing=ls)
    try:
        return TaylorLoss.from_preset(spec.name, label_smoothing=ls)
    except KeyError as e:  # taylorglo.presets.UnknownPresetError, with the close names
        raise ValueError(f"unknown preset {spec.name!r} in loss spec {str(spec)!r}: {e}") from None
