"""Pure-PyTorch specification of the Taylor loss.

Short and obviously right: it evaluates the polynomial in its centered form, straight from the
flat parameter vector. The tests hold the compiled kernels to it; it is also the fallback on devices
that have no kernel and the path for second-order gradients (``create_graph=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from taylorglo.polynomial import infer_order, monomial_exponents, validate_variables

__all__ = ["evaluate_polynomial", "taylor_loss_reference"]


def evaluate_polynomial(
    params: torch.Tensor,
    order: int,
    variables: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """f(x, y[, t]) = sum_e params[e] * prod_v (v - center_v)^e_v, elementwise over x and y."""
    variables = validate_variables(variables)
    exponents = monomial_exponents(order, variables)
    n = len(exponents)
    centers = params[n:]
    point = [x, y] + ([t] if "t" in variables else [])
    out = torch.zeros_like(y)
    for i, e in enumerate(exponents):
        term = params[i]
        for v, c, p in zip(point, centers, e):
            if p:
                term = term * (v - c) ** p
        out = out + term
    return out


def taylor_loss_reference(
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
) -> torch.Tensor:
    """Reference Taylor loss with the semantics of ``taylorglo.taylor_loss``.

    p = softmax(logits, dim=1) (in at least float32); x is the one-hot label, or the target itself
    when it is a floating-point tensor of the logits' shape; label smoothing mixes x with the
    uniform distribution: x' = (1 - eps) x + eps / C. The loss at each position is
    -sum_c f(x'_c, p_c); ``mean`` divides by the number of non-ignored positions (0 when none).
    """
    variables = validate_variables(variables)
    unbatched = logits.dim() == 1
    if unbatched:
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    # A sequence goes straight to the compute dtype: through torch's default float32 it would be rounded.
    if isinstance(params, torch.Tensor):
        params = params.to(device=logits.device, dtype=compute_dtype)
    else:
        params = torch.tensor([float(v) for v in params], dtype=compute_dtype, device=logits.device)
    if order is None:
        order = infer_order(params.numel(), variables)
    if "t" in variables:
        if progress is None:
            raise ValueError("a loss with the t variable needs the training progress")
        progress = torch.as_tensor(progress, dtype=compute_dtype, device=logits.device)
    num_classes = logits.shape[1]
    p = torch.softmax(logits.to(compute_dtype), dim=1)
    if target.is_floating_point():
        x = target.to(compute_dtype)
        valid = None
    else:
        valid = target != ignore_index
        x = F.one_hot(torch.where(valid, target, 0), num_classes).movedim(-1, 1).to(compute_dtype)
    if label_smoothing:
        x = x * (1.0 - label_smoothing) + label_smoothing / num_classes
    per_position = -evaluate_polynomial(params, order, variables, x, p, progress).sum(dim=1)
    if valid is not None:
        per_position = torch.where(valid, per_position, torch.zeros_like(per_position))
    if unbatched:
        per_position = per_position.squeeze(0)
    out_dtype = logits.dtype
    if reduction == "none":
        return per_position.to(out_dtype)
    if reduction == "sum":
        return per_position.sum().to(out_dtype)
    if reduction == "mean":
        count = per_position.numel() if valid is None else valid.sum()
        return (per_position.sum() / torch.clamp(torch.as_tensor(count, device=logits.device), min=1)).to(
            out_dtype
        )
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
