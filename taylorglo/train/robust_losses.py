"""Losses designed for noisy labels: the baselines a loss search on noisy data must beat.

Each is a small ``nn.Module`` with ``forward(logits, target)`` like timm's losses, in pure PyTorch:

- :class:`GeneralizedCrossEntropy` (GCE; Zhang & Sabuncu, *Generalized Cross Entropy Loss for
  Training Deep Neural Networks with Noisy Labels*, NeurIPS 2018): ``(1 - p_t^q) / q``, between
  cross-entropy (q -> 0) and MAE / 2 (q = 1);
- :class:`SymmetricCrossEntropy` (SCE; Wang et al., *Symmetric Cross Entropy for Robust Learning
  with Noisy Labels*, ICCV 2019): ``alpha * CE + beta * RCE`` with the reverse cross-entropy
  ``RCE = -sum_k p_k log y_k``, ``log 0`` clamped to ``A``; for a one-hot label that is
  ``-A (1 - p_t)``;
- :class:`MeanAbsoluteError` (MAE; Ghosh et al., AAAI 2017): ``sum_k |p_k - y_k| = 2 (1 - p_t)``.

``p = softmax(logits, dim=1)``, ``t`` the target class, ``y`` its one-hot vector. Shapes as in
``F.cross_entropy`` with class indices: logits ``(N, C)`` or ``(N, C, d1, ..., dk)``, target
``(N)`` or ``(N, d1, ..., dk)`` (int64). ``reduction="mean"`` averages over the positions whose
target is not ``ignore_index`` (0 when there are none); ``"sum"`` and ``"none"`` as in torch.
16-bit logits are computed in float32. Soft (probability) targets are not supported.

The trainer builds them from the loss specs ``gce:q=0.7``, ``sce:alpha=0.1,beta=1.0`` (``,A=-4``)
and ``mae`` (see :mod:`taylorglo.train.losses`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ROBUST_LOSSES",
    "GeneralizedCrossEntropy",
    "MeanAbsoluteError",
    "SymmetricCrossEntropy",
    "robust_loss_options",
]

_REDUCTIONS = ("mean", "sum", "none")


class _HardLabelLoss(nn.Module):
    """Shared plumbing: checks, the target log-probability, ignore_index and the reduction."""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = int(ignore_index)

    def _target_log_prob(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p_t with 0 at ignored positions, the mask of kept positions), both of target's shape."""
        if target.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} takes class-index targets (int64), got a {target.dtype} tensor; "
                "soft (probability) targets are not supported"
            )
        if logits.dim() < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"{type(self).__name__}: logits (N, C, ...) and target (N, ...) do not match: "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        keep = target != self.ignore_index
        safe = torch.where(keep, target, torch.zeros_like(target)).long()
        log_p = F.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        return torch.where(keep, log_p, torch.zeros_like(log_p)), keep

    def _reduce(self, loss: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        loss = torch.where(keep, loss, torch.zeros_like(loss))
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / keep.sum().clamp(min=1)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"


class GeneralizedCrossEntropy(_HardLabelLoss):
    """GCE: ``(1 - p_t^q) / q`` per position (Zhang & Sabuncu, NeurIPS 2018).

    Args:
        q: in (0, 1]; default 0.7 (the paper's choice). q -> 0 approaches cross-entropy
            (``-log p_t``), q = 1 is ``1 - p_t`` (MAE / 2). The gradient is cross-entropy's
            weighted by ``p_t^q``: confident mistakes (likely wrong labels) weigh less.
        reduction, ignore_index: as in ``nn.CrossEntropyLoss``.

    Computed as ``-expm1(q log p_t) / q`` from ``log_softmax``: no underflow of ``p_t`` for very
    negative logits and no cancellation in ``1 - p_t^q`` as ``p_t -> 1``.
    """

    DEFAULTS: dict[str, float] = {"q": 0.7}

    def __init__(self, q: float = 0.7, reduction: str = "mean", ignore_index: int = -100):
        super().__init__(reduction, ignore_index)
        self.q = self.check(q=q)["q"]

    @staticmethod
    def check(q: float) -> dict[str, float]:
        """Validated options, or ValueError naming the value and the valid range."""
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
            raise ValueError(f"q must be in (0, 1], got {q!r}")
        return {"q": float(q)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p, keep = self._target_log_prob(logits, target)
        return self._reduce(-torch.expm1(self.q * log_p) / self.q, keep)

    def extra_repr(self) -> str:
        return f"q={self.q}, " + super().extra_repr()


class SymmetricCrossEntropy(_HardLabelLoss):
    """SCE: ``alpha * CE + beta * RCE`` per position (Wang et al., ICCV 2019).

    ``CE = -log p_t``; the reverse cross-entropy ``RCE = -sum_k p_k log y_k`` swaps prediction and
    one-hot label ``y`` and clamps ``log 0`` to ``A``, so ``RCE = -A sum_{k != t} p_k = -A (1 - p_t)``
    (between 0 and ``-A``).

    Args:
        alpha: weight of CE, >= 0; default 0.1.
        beta: weight of RCE, >= 0; default 1.0 (alpha and beta not both 0).
        A: the clamped ``log 0``, < 0; default -4 as in the paper (its public code clamps the
            label at 1e-4 instead, i.e. A = log 1e-4 = -9.21).
        reduction, ignore_index: as in ``nn.CrossEntropyLoss``.

    The paper's defaults for CIFAR-10 are alpha = 0.1, beta = 1.0; for CIFAR-100 alpha = 6.0,
    beta = 0.1.
    """

    DEFAULTS: dict[str, float] = {"alpha": 0.1, "beta": 1.0, "A": -4.0}

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        A: float = -4.0,  # noqa: N803 - the paper's name
        reduction: str = "mean",
        ignore_index: int = -100,
    ):
        super().__init__(reduction, ignore_index)
        opts = self.check(alpha=alpha, beta=beta, A=A)
        self.alpha, self.beta, self.A = opts["alpha"], opts["beta"], opts["A"]

    @staticmethod
    def check(alpha: float, beta: float, A: float) -> dict[str, float]:  # noqa: N803
        """Validated options, or ValueError naming the value and the valid range."""
        for name, value in (("alpha", alpha), ("beta", beta)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value < float("inf")
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if alpha == 0 and beta == 0:
            raise ValueError("alpha and beta must not both be 0 (the loss would be constant)")
        if isinstance(A, bool) or not isinstance(A, (int, float)) or not float("-inf") < A < 0.0:
            raise ValueError(f"A (the clamped log 0) must be a finite number < 0, got {A!r}")
        return {"alpha": float(alpha), "beta": float(beta), "A": float(A)}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p, keep = self._target_log_prob(logits, target)
        rce = self.A * torch.expm1(log_p)  # -A (1 - p_t)
        return self._reduce(self.alpha * -log_p + self.beta * rce, keep)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, A={self.A}, " + super().extra_repr()


class MeanAbsoluteError(_HardLabelLoss):
    """MAE: ``sum_k |p_k - y_k| = 2 (1 - p_t)`` per position, ``y`` the one-hot label.

    Bounded and symmetric, hence robust to symmetric label noise (Ghosh et al., AAAI 2017), but
    slow to train: its gradient is cross-entropy's times ``2 p_t``. No options besides
    ``reduction`` and ``ignore_index``.
    """

    DEFAULTS: dict[str, float] = {}

    @staticmethod
    def check() -> dict[str, float]:
        return {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p, keep = self._target_log_prob(logits, target)
        return self._reduce(-2.0 * torch.expm1(log_p), keep)  # 2 (1 - p_t)


ROBUST_LOSSES: dict[str, type[_HardLabelLoss]] = {
    "gce": GeneralizedCrossEntropy,
    "sce": SymmetricCrossEntropy,
    "mae": MeanAbsoluteError,
}


def robust_loss_options(kind: str, options: Mapping[str, Any]) -> dict[str, float]:
    """``options`` of the loss ``kind`` with defaults filled in and values checked.

    Raises ValueError for an unknown kind, an unknown option (naming the valid ones and their
    defaults) or a value out of range.
    """
    if kind not in ROBUST_LOSSES:
        raise ValueError(f"unknown robust loss {kind!r}; known: {', '.join(ROBUST_LOSSES)}")
    cls = ROBUST_LOSSES[kind]
    unknown = [k for k in options if k not in cls.DEFAULTS]
    if unknown:
        takes = (
            "takes " + ", ".join(f"{k} (default {v:g})" for k, v in cls.DEFAULTS.items())
            if cls.DEFAULTS
            else "takes no options"
        )
        raise ValueError(f"{kind} has no option {', '.join(map(repr, unknown))}; {kind} {takes}")
    return cls.check(**{**cls.DEFAULTS, **options})
