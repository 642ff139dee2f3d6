"""``TaylorLoss``: a TaylorGLO loss as a drop-in replacement for ``nn.CrossEntropyLoss``.

The polynomial f(x, y[, t]) (see ``taylorglo.polynomial``) is expanded on the device into power-basis
coefficients with ordinary differentiable tensor ops, so changing the parameters or the training
progress t between steps never recompiles anything or syncs the host. The loss itself is one op,
``taylorglo::hard_loss`` / ``soft_loss``: the fused forward kernel and the reduction under one C++
autograd node whose backward is the fused backward kernel (``csrc/autograd.cpp``, ``taylorglo.ops``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import nn

from taylorglo import ops
from taylorglo.polynomial import (
    TaylorPolynomial,
    binomial_expansion,
    expansion_tables,
    infer_order,
    parameter_count,
    validate_variables,
)
from taylorglo.reference import taylor_loss_reference

__all__ = ["TaylorLoss", "taylor_loss"]

_REDUCTIONS = ("none", "mean", "sum")
_REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}  # at::Reduction, as the ops take it
_BACKENDS = ("auto", "kernel", "reference")


# Resolved once: this runs on every call, where a lookup chain costs a microsecond.
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)


def _make_device_tables(order: int, variables: tuple[str, ...], device: torch.device, dtype: torch.dtype):
    n, binom, index, t_exp = expansion_tables(order, variables)
    bx, by = (torch.tensor(b, dtype=dtype, device=device) for b in binom)
    ix, iy = (torch.tensor(i, dtype=torch.long, device=device) for i in index)
    powers = torch.arange(order + 1, dtype=dtype, device=device)
    te = torch.tensor(t_exp, dtype=dtype, device=device) if t_exp is not None else None
    return n, bx, by, ix, iy, powers, te


_cached_device_tables = lru_cache(maxsize=64)(_make_device_tables)


def _device_tables(order: int, variables: tuple[str, ...], device: torch.device, dtype: torch.dtype):
    # Under torch.compile the tables become graph constants; in eager mode they are cached per device.
    if _is_compiling():
        return _make_device_tables(order, variables, device, dtype)
    return _cached_device_tables(order, variables, device, dtype)


def power_basis(
    params: torch.Tensor, order: int, variables: Sequence[str], progress: torch.Tensor | None = None
) -> torch.Tensor:
    """Coefficients ``P[i, j]`` of ``x^i y^j`` (shape (k+1, k+1)), differentiable in params and t."""
    variables = tuple(variables)
    n, bx, by, ix, iy, powers, te = _device_tables(order, variables, params.device, params.dtype)
    coefs, cx, cy = params[:n], params[n], params[n + 1]
    px = bx * torch.pow(-cx, powers)[ix]  # (n, k+1): coefficient of x^r in (x - cx)^ex
    py = by * torch.pow(-cy, powers)[iy]
    if te is not None:
        if progress is None:
            raise ValueError(
                "a loss with the t variable needs the training progress t (set_progress or progress=)"
            )
        coefs = coefs * torch.pow(progress.to(params.dtype) - params[n + 2], te)
    return torch.einsum("n,nr,ns->rs", coefs, px, py)


def _make_smoothing_matrix(order: int, eps: float, num_classes: int) -> list[list[float]]:
    """M[a][i]: x^i with x -> (1 - eps) x + eps / C, expanded: (..)^i = sum_a M[a][i] x^a."""
    s, u = 1.0 - eps, eps / num_classes
    terms = [binomial_expansion(i) for i in range(order + 1)]
    return [
        [terms[i][a][1] * s**a * u ** terms[i][a][2] if a <= i else 0.0 for i in range(order + 1)]
        for a in range(order + 1)
    ]


_cached_smoothing_matrix = lru_cache(maxsize=256)(_make_smoothing_matrix)


def _smoothing_matrix(order: int, eps: float, num_classes: int) -> list[list[float]]:
    # Dynamo is never asked to trace the cache (it warns when it is): under torch.compile the matrix
    # becomes a graph constant; in eager mode it is cached.
    if _is_compiling():
        return _make_smoothing_matrix(order, eps, num_classes)
    return _cached_smoothing_matrix(order, eps, num_classes)


def _refuse_string(params: object) -> None:
    if isinstance(params, str):
        raise TypeError(
            f"params must be numbers (a sequence, a tensor or a TaylorPolynomial), got the string {params!r}; "
            "split it first, e.g. [float(v) for v in text.split(',')], or use TaylorLoss.from_preset(name) "
            "for a named preset"
        )


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, reduction: str, label_smoothing: float) -> bool:
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"logits and target must be tensors, got {type(logits).__name__} and {type(target).__name__}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.dim() < 2:
        raise ValueError(f"logits must have shape (N, C) or (N, C, d1, ...), got {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} have 0 classes (dim 1); the loss needs at least 1 class"
        )
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"soft (probability) targets must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}"
            )
        return False
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must hold class indices (an integer tensor) or class probabilities, got {target.dtype}"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"class-index target must have shape {expected} for logits of shape {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    return True


def validate_targets(target: torch.Tensor, num_classes: int, ignore_index: int = -100) -> None:
    """Host-side check that class indices lie in [0, num_classes) or equal ignore_index (syncs the host)."""
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        pos = int(bad.flatten().nonzero()[0])
        raise ValueError(
            f"target {int(target.flatten()[pos])} at flat position {pos} is out of range for "
            f"{num_classes} classes (valid: 0..{num_classes - 1}, or ignore_index={ignore_index})"
        )


def _kernel_coefficients(
    params: torch.Tensor,
    order: int,
    variables: tuple[str, ...],
    progress: torch.Tensor | None,
    label_smoothing: float,
    num_classes: int,
    hard: bool,
    acc: torch.dtype,
) -> torch.Tensor:
    """The kernels' coefficient tensor: (2, k+1) rows A, B for hard labels; (k+1, k+1) for soft."""
    basis = power_basis(params.to(acc), order, variables, progress)  # (k+1, k+1): x^i y^j
    if hard:
        x_off = label_smoothing / num_classes
        x_on = 1.0 - label_smoothing + x_off
        xs = torch.tensor(
            [[x_off**i for i in range(order + 1)], [x_on**i for i in range(order + 1)]], dtype=acc
        )
        return (xs.to(basis.device) @ basis).contiguous()  # A (non-target), B (target)
    if label_smoothing:
        m = torch.tensor(_smoothing_matrix(order, float(label_smoothing), num_classes), dtype=acc)
        basis = m.to(basis.device) @ basis
    return basis.contiguous()


def taylor_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    params: torch.Tensor | Sequence[float],
    *,
    order: int | None = None,
    variables: Sequence[str] = ("x", "y"),
    progress: torch.Tensor | float | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    backend: str = "auto",
    validate: bool = False,
    _coef_cache: dict | None = None,
) -> torch.Tensor:
    """The Taylor loss of ``logits`` against ``target``, with the semantics of ``F.cross_entropy``.

    Args:
        logits: (N, C) or (N, C, d1, ..., dk) unnormalized scores; (C,) for one unbatched sample.
        target: class indices of shape (N, d1, ..., dk) (integer), or class probabilities of the
            logits' shape (floating point; soft targets as mixup/cutmix produce).
        params: the flat parameter vector (``taylorglo.polynomial`` layout).
        order: polynomial order; inferred from the vector's length when omitted.
        variables: ``("x", "y")`` or ``("x", "y", "t")``; with t, ``progress`` in [0, 1] is required.
        reduction: ``"mean"`` (over non-ignored positions; 0 when there are none), ``"sum"`` or ``"none"``.
        ignore_index: class index whose positions contribute neither loss nor gradient.
        label_smoothing: x' = (1 - eps) x + eps / C, as ``nn.CrossEntropyLoss`` does.
        backend: ``"auto"`` (compiled kernel when available, else the reference with a warning),
            ``"kernel"`` (error when unavailable) or ``"reference"`` (pure PyTorch; twice differentiable).
        validate: check class indices on the host first (syncs; CUDA kernels otherwise assert on device).

    Returns:
        The loss per position -sum_c f(x_c, p_c) with p = softmax(logits, dim=1), reduced; in the
        logits' dtype (computed in at least float32).
    """
    variables = validate_variables(variables)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    unbatched = isinstance(logits, torch.Tensor) and logits.dim() == 1
    if unbatched:
        logits = logits.unsqueeze(0)
        target = target.unsqueeze(0)
    hard = _check_inputs(logits, target, reduction, label_smoothing)
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if not isinstance(params, torch.Tensor):
        _refuse_string(params)
        params = torch.tensor([float(v) for v in params], dtype=acc, device=logits.device)
    if params.dim() != 1:
        raise ValueError(f"params must be a 1-d vector, got shape {tuple(params.shape)}")
    if order is None:
        order = infer_order(params.numel(), variables)
    elif not _is_compiling() and params.numel() != parameter_count(order, variables):
        raise ValueError(
            f"an order-{order} loss in {variables} takes {parameter_count(order, variables)} parameters, "
            f"got {params.numel()}"
        )
    if params.device != logits.device:
        raise ValueError(f"params are on {params.device} but logits on {logits.device}")
    if "t" in variables:
        if progress is None:
            raise ValueError(
                "a loss with the t variable needs the training progress: pass progress= (0 to 1)"
            )
        if not isinstance(progress, torch.Tensor):
            progress = torch.tensor(float(progress), dtype=torch.float64)
        progress = progress.to(logits.device)
    if hard:
        target = target.long()
        if validate:
            validate_targets(target, logits.shape[1], ignore_index)

    use_kernel = backend == "kernel" or (
        backend == "auto" and order <= ops.MAX_KERNEL_ORDER and ops.has_kernel(logits.device.type)
    )
    if backend == "kernel" and not (
        ops.has_kernel(logits.device.type, warn=False) and order <= ops.MAX_KERNEL_ORDER
    ):
        raise RuntimeError(
            f"taylorglo: no compiled kernel for {logits.device.type} tensors with order {order} "
            f"(kernels: {ops.kernel_devices()}, orders <= {ops.MAX_KERNEL_ORDER}; {ops.EXTENSION_ERROR or 'built'})"
        )
    if not use_kernel:
        out = taylor_loss_reference(
            logits,
            target,
            params,
            order=order,
            variables=variables,
            progress=progress,
            reduction=reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )
        return out.squeeze(0) if unbatched and reduction == "none" else out

    num_classes = logits.shape[1]
    coef = None
    cacheable = _coef_cache is not None and not _is_compiling()
    if cacheable and torch.is_grad_enabled():
        cacheable = not params.requires_grad and not (progress is not None and progress.requires_grad)
    if cacheable:
        key = (
            params._version,
            None if progress is None else progress._version,
            logits.device,
            acc,
            num_classes,
            hard,
            float(label_smoothing),
            order,
        )
        same_tensors = _coef_cache.get("params") is not None and _coef_cache["params"]() is params
        if same_tensors and progress is not None:
            same_tensors = _coef_cache["progress"] is not None and _coef_cache["progress"]() is progress
        if same_tensors and _coef_cache.get("key") == key:
            coef = _coef_cache["coef"]
    if coef is None:
        coef = _kernel_coefficients(
            params, order, variables, progress, label_smoothing, num_classes, hard, acc
        )
        if cacheable:
            _coef_cache.update(
                key=key,
                coef=coef,
                params=weakref.ref(params),
                progress=None if progress is None else weakref.ref(progress),
            )
    # One op: the fused forward kernel and the reduction, with one autograd node (csrc/autograd.cpp).
    code = _REDUCTION_CODES[reduction]
    if hard:
        out = torch.ops.taylorglo.hard_loss.default(
            logits.contiguous(), target.contiguous(), coef, ignore_index, code
        )
    else:
        out = torch.ops.taylorglo.soft_loss.default(
            logits.contiguous(), target.to(logits.dtype).contiguous(), coef, code
        )
    return out.squeeze(0) if unbatched and reduction == "none" else out


# The options TaylorLoss.from_preset passes on; the polynomial is the preset's.
_PRESET_OPTIONS = ("reduction", "ignore_index", "label_smoothing", "backend", "validate")


class TaylorLoss(nn.Module):
    r"""A TaylorGLO loss: ``-sum_c f(x_c, p_c)`` with f a Taylor polynomial, as a drop-in for
    ``nn.CrossEntropyLoss``.

    f(x, y[, t]) = sum_e theta_e prod_v (v - c_v)^{e_v} over the exponent tuples e of total degree
    <= order with a y-exponent > 0, where x is the (smoothed) label, y = softmax(logits)_c the
    predicted probability and t in [0, 1] the training progress (optional).

    Args:
        params: flat parameter vector in the original TaylorGLO layout (coefficients, then centers),
            a ``TaylorPolynomial``, or a tensor (kept as the buffer ``params``; it may require grad).
        order: polynomial order; inferred from the length when omitted.
        reduction, ignore_index, label_smoothing: as in ``nn.CrossEntropyLoss``.
        variables: ``("x", "y")`` or ``("x", "y", "t")``.
        backend: ``"auto"``, ``"kernel"`` or ``"reference"`` (see ``taylor_loss``).
        validate: host-side check of class indices on every call (syncs the host).

    Shapes:
        logits (N, C) or (N, C, d1, ..., dk); target (N, d1, ..., dk) class indices or the logits'
        shape for class probabilities; output a scalar, or (N, d1, ..., dk) with ``reduction="none"``.
    """

    def __init__(
        self,
        params: Sequence[float] | torch.Tensor | TaylorPolynomial,
        *,
        order: int | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        variables: Sequence[str] = ("x", "y"),
        backend: str = "auto",
        validate: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(params, TaylorPolynomial):
            if order is not None and order != params.order:
                raise ValueError(f"order={order} contradicts the polynomial's order {params.order}")
            order, variables, params = params.order, params.variables, list(params.vector)
        self.variables = validate_variables(variables)
        if isinstance(params, torch.Tensor):
            tensor = params if params.is_floating_point() else params.double()
        else:
            _refuse_string(params)
            tensor = torch.tensor([float(v) for v in params], dtype=torch.float64)
        if tensor.dim() != 1:
            raise ValueError(f"params must be a 1-d vector, got shape {tuple(tensor.shape)}")
        if order is None:
            order = infer_order(tensor.numel(), self.variables)
        elif tensor.numel() != parameter_count(order, self.variables):
            raise ValueError(
                f"an order-{order} loss in {self.variables} takes {parameter_count(order, self.variables)} "
                f"parameters, got {tensor.numel()}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"params must be finite, got {tensor.tolist()}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.order = order
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        self.backend = backend
        self.validate = validate
        self.register_buffer("params", tensor)
        self.register_buffer(
            "progress", torch.zeros((), dtype=torch.float64), persistent="t" in self.variables
        )
        # The kernels' coefficients, reused while params and progress are unchanged (tensor versions).
        self._coef_cache: dict = {}

    @classmethod
    def cross_entropy_approximation(
        cls, order: int = 3, center: tuple[float, float] = (0.5, 0.5), **kwargs
    ) -> TaylorLoss:
        """The order-k Taylor approximation of cross-entropy around ``center`` (see TaylorPolynomial)."""
        return cls(TaylorPolynomial.cross_entropy(order, center), **kwargs)

    @classmethod
    def from_preset(cls, name, **overrides) -> TaylorLoss:
        """The loss of a named preset (``taylorglo.presets``): the one place a preset becomes a loss.

        ``name`` is a registered preset's name or a :class:`taylorglo.presets.Preset`. ``overrides``
        are the loss options (``reduction``, ``ignore_index``, ``label_smoothing``, ``backend``,
        ``validate``); the polynomial itself (params, order, variables) is the preset's, and any
        other keyword is a TypeError. A subclass's ``from_preset`` builds the subclass. An unknown
        name raises :class:`taylorglo.presets.UnknownPresetError` (a KeyError) listing close names.
        """
        from taylorglo.presets import get_preset

        preset = get_preset(name)
        bad = [k for k in overrides if k not in _PRESET_OPTIONS]
        if bad:
            fixed = [k for k in bad if k in ("params", "order", "variables")]
            why = (
                f"the preset fixes {', '.join(fixed)}; build TaylorLoss(params, ...) for another polynomial"
                if fixed
                else f"accepted: {', '.join(_PRESET_OPTIONS)}"
            )
            raise TypeError(f"from_preset({preset.name!r}) got unexpected option(s) {', '.join(bad)}: {why}")
        return cls(list(preset.params), order=preset.order, variables=preset.variables, **overrides)

    @property
    def has_progress(self) -> bool:
        """Whether the loss depends on the training progress t (set it with ``set_progress``)."""
        return "t" in self.variables

    @property
    def polynomial(self) -> TaylorPolynomial:
        """The current parameters as a ``TaylorPolynomial`` (copies to the host)."""
        return TaylorPolynomial(self.params.detach().cpu().tolist(), self.order, self.variables)

    def set_progress(self, t: float | torch.Tensor) -> None:
        """Set the training progress t in [0, 1] (in place on the device: no recompile, no sync)."""
        if not isinstance(t, torch.Tensor) and not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"training progress must be in [0, 1], got {t}")
        with torch.no_grad():
            self.progress.copy_(torch.as_tensor(t, dtype=self.progress.dtype))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return taylor_loss(
            logits,
            target,
            self.params,
            order=self.order,
            variables=self.variables,
            progress=self.progress if self.has_progress else None,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            backend=self.backend,
            validate=self.validate,
            _coef_cache=self._coef_cache,
        )

    def extra_repr(self) -> str:
        parts = [f"order={self.order}", f"variables={self.variables}", f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        return ", ".join(parts)
