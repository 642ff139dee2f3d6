"""The compiled Taylor-loss ops: loading the extension, fake-tensor and autograd registration.

The schemas live in ``csrc/taylor_loss.cpp`` (namespace ``taylorglo``), the kernels in
``csrc/cpu`` and ``csrc/cuda``. This module adds what PyTorch needs around them: shape-only (fake)
implementations for ``torch.compile`` and export, and the autograd formula, whose backward is itself
a registered op. Nothing else lives here.
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
            (_rows(logits), 4), dtype=acc
        )

    @torch.library.register_fake("taylorglo::soft_forward")
    def _soft_forward_fake(logits, target, coef):
        torch._check(
            logits.dim() >= 2, lambda: f"taylorglo: logits must have shape (N, C, ...), got {logits.shape}"
        )
        acc = _acc_dtype(logits)
        return logits.new_empty(_loss_shape(logits), dtype=acc), logits.new_empty(
            (_rows(logits), 2), dtype=acc
        )

    @torch.library.register_fake("taylorglo::hard_backward")
    def _hard_backward_fake(grad_loss, logits, target, coef, stats, ignore_index):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    @torch.library.register_fake("taylorglo::soft_backward")
    def _soft_backward_fake(grad_loss, logits, target, coef, stats):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    # ------------------------------------------------------------------------------------------
    # Autograd. The per-row loss depends on the logits and on the power-basis coefficients; the
    # gradient w.r.t. the logits is one fused op; the gradient w.r.t. the coefficients (needed only
    # when the loss parameters themselves are trained) is d loss_row / d coef = -(power sums of p),
    # computed here with ordinary tensor ops from the saved log-sum-exp.

    def _powers(p: torch.Tensor, order: int) -> torch.Tensor:
        return p.unsqueeze(-1) ** torch.arange(order + 1, device=p.device, dtype=p.dtype)

    def _probs(logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
        # logits (N, C, *s) -> p (rows, C) in the accumulation dtype, row order as the kernels use.
        z = logits.to(lse.dtype).movedim(1, -1).reshape(-1, logits.shape[1])
        return torch.exp(z - lse.unsqueeze(1))

    def _hard_setup(ctx, inputs, output):
        logits, target, coef, ignore_index = inputs
        ctx.ignore_index = ignore_index
        ctx.save_for_backward(logits, target, coef, output[1])

    def _check_first_order(grad_loss: torch.Tensor, logits: torch.Tensor) -> None:
        if torch.is_grad_enabled() and (grad_loss.requires_grad or logits.requires_grad):
            raise RuntimeError(
                "taylorglo: the fused Taylor-loss kernels are not twice differentiable (create_graph=True); "
                "for second-order gradients use TaylorLoss(..., backend='reference')"
            )

    def _hard_backward(ctx, grad_loss, grad_stats):
        logits, target, coef, stats = ctx.saved_tensors
        _check_first_order(grad_loss, logits)
        grad_loss = grad_loss.to(stats.dtype).contiguous()
        grad_logits = grad_coef = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.ops.taylorglo.hard_backward.default(
                grad_loss, logits, target, coef, stats, ctx.ignore_index
            )
        if ctx.needs_input_grad[2]:
            order = coef.shape[1] - 1
            p = _probs(logits, stats[:, 0])
            t = target.reshape(-1)
            valid = t != ctx.ignore_index
            tc = torch.where(valid, t, 0).unsqueeze(1)
            pw = _powers(p, order)  # (rows, C, K+1)
            pt_pw = pw.gather(1, tc.unsqueeze(-1).expand(-1, 1, order + 1)).squeeze(1)
            other = pw.sum(1) - pt_pw
            basis = -torch.stack([other, pt_pw], dim=1) * valid.view(-1, 1, 1)
            grad_coef = torch.einsum("r,rab->ab", grad_loss.reshape(-1), basis)
        return grad_logits, None, grad_coef, None

    def _soft_setup(ctx, inputs, output):
        logits, target, coef = inputs
        ctx.save_for_backward(logits, target, coef, output[1])

    def _soft_backward(ctx, grad_loss, grad_stats):
        logits, target, coef, stats = ctx.saved_tensors
        _check_first_order(grad_loss, logits)
        grad_loss = grad_loss.to(stats.dtype).contiguous()
        grad_logits = grad_coef = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.ops.taylorglo.soft_backward.default(grad_loss, logits, target, coef, stats)
        if ctx.needs_input_grad[2]:
            order = coef.shape[1] - 1
            p = _probs(logits, stats[:, 0])
            x = target.to(stats.dtype).movedim(1, -1).reshape(p.shape)
            basis = -torch.einsum("rci,rcm->rim", _powers(x, order), _powers(p, order))
            grad_coef = torch.einsum("r,rim->im", grad_loss.reshape(-1), basis)
        return grad_logits, None, grad_coef

    torch.library.register_autograd("taylorglo::hard_forward", _hard_backward, setup_context=_hard_setup)
    torch.library.register_autograd("taylorglo::soft_forward", _soft_backward, setup_context=_soft_setup)
