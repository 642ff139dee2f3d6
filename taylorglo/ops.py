"""The compiled Taylor-loss ops: loading the extension and fake-tensor registration.

The schemas live in ``csrc/taylor_loss.cpp`` (namespace ``taylorglo``), the kernels in
``csrc/cpu`` and ``csrc/cuda``, and the autograd formulas in ``csrc/autograd.cpp`` (registered in
C++ under the Autograd key, whose backward is itself a registered op). This module adds the
shape-only (fake) implementations that ``torch.compile`` and export need. Nothing else lives here.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["EXTENSION_ERROR", "MAX_KERNEL_ORDER", "has_kernel", "kernel_devices"]

MAX_KERNEL_ORDER = 12  # keep in sync with kMaxOrder in csrc/checks.h

try:
    from taylorglo import _C  # noqa: F401  (importing registers the ops)

    EXTENSION_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    EXTENSION_ERROR = f"{type(exc).__name__}: {exc}"


def _has_impl(device_type: str) -> bool:
    if EXTENSION_ERROR is not None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("taylorglo::hard_forward", key)


_HAS_IMPL = {dev: _has_impl(dev) for dev in ("cpu", "cuda")}


def kernel_devices() -> list[str]:
    """Device types that have compiled Taylor-loss kernels in this build."""
    return [dev for dev, ok in _HAS_IMPL.items() if ok]


_warned: set[str] = set()


def has_kernel(device_type: str, warn: bool = True) -> bool:
    """Whether the compiled kernel serves ``device_type``; warns once per device type when not."""
    ok = _HAS_IMPL.get(device_type, False)
    if not ok and warn and device_type not in _warned:
        _warned.add(device_type)
        why = EXTENSION_ERROR or f"this build has no {device_type} kernel"
        warnings.warn(
            f"taylorglo: no compiled kernel for device type '{device_type}' ({why}); "
            "using the pure-PyTorch reference implementation, which is slower",
            RuntimeWarning,
            stacklevel=3,
        )
    return ok


if EXTENSION_ERROR is None:

    def _acc_dtype(logits: torch.Tensor) -> torch.dtype:
        return torch.float64 if logits.dtype == torch.float64 else torch.float32

    def _loss_shape(logits: torch.Tensor) -> list:
        return [logits.shape[0], *logits.shape[2:]]

    def _rows(logits: torch.Tensor):
        rows = logits.shape[0]
        for d in logits.shape[2:]:
            rows = rows * d
        return rows

    @torch.library.register_fake("taylorglo::hard_forward")
    def _hard_forward_fake(logits, target, coef, ignore_index):
        torch._check(
            logits.dim() >= 2, lambda: f"taylorglo: logits must have shape (N, C, ...), got {logits.shape}"
        )
        acc = _acc_dtype(logits)
        return logits.new_empty(_loss_shape(logits), dtype=acc), logits.new_empty(
            (5, _rows(logits)), dtype=acc
        )

    @torch.library.register_fake("taylorglo::soft_forward")
    def _soft_forward_fake(logits, target, coef):
        torch._check(
            logits.dim() >= 2, lambda: f"taylorglo: logits must have shape (N, C, ...), got {logits.shape}"
        )
        acc = _acc_dtype(logits)
        return logits.new_empty(_loss_shape(logits), dtype=acc), logits.new_empty(
            (3, _rows(logits)), dtype=acc
        )

    @torch.library.register_fake("taylorglo::hard_backward")
    def _hard_backward_fake(grad_loss, logits, target, coef, stats, ignore_index):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    @torch.library.register_fake("taylorglo::soft_backward")
    def _soft_backward_fake(grad_loss, logits, target, coef, stats):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    def _reduced_fake(logits, reduction):
        torch._check(
            logits.dim() >= 2, lambda: f"taylorglo: logits must have shape (N, C, ...), got {logits.shape}"
        )
        torch._check(
            reduction in (0, 1, 2), lambda: f"taylorglo: reduction must be 0, 1 or 2, got {reduction}"
        )
        return logits.new_empty(_loss_shape(logits) if reduction == 0 else [])

    @torch.library.register_fake("taylorglo::hard_loss")
    def _hard_loss_fake(logits, target, coef, ignore_index, reduction):
        return _reduced_fake(logits, reduction)

    @torch.library.register_fake("taylorglo::soft_loss")
    def _soft_loss_fake(logits, target, coef, reduction):
        return _reduced_fake(logits, reduction)
