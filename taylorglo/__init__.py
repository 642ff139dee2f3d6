"""taylorglo: TaylorGLO loss functions for PyTorch.

``TaylorLoss`` is a drop-in replacement for ``nn.CrossEntropyLoss`` whose loss is a low-order
Taylor polynomial in the label and the predicted probability (Gonzalez & Miikkulainen, GECCO 2021),
computed by fused C++/CUDA kernels. ``python -m taylorglo.search`` finds such losses with CMA-ES.
"""

from taylorglo.loss import TaylorLoss, taylor_loss
from taylorglo.polynomial import (
    TaylorPolynomial,
    canonical_coordinates,
    canonical_dimension,
    check_invariant,
    from_canonical,
    infer_order,
    invariant_margin,
    monomial_exponents,
    parameter_count,
)
from taylorglo.reference import taylor_loss_reference

__version__ = "0.1.0"

__all__ = [
    "TaylorLoss",
    "TaylorPolynomial",
    "__version__",
    "canonical_coordinates",
    "canonical_dimension",
    "check_invariant",
    "from_canonical",
    "infer_order",
    "invariant_margin",
    "monomial_exponents",
    "parameter_count",
    "taylor_loss",
    "taylor_loss_reference",
]
