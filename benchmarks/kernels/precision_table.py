"""Gradient precision against logits that share a large offset (issue 14): one markdown table.

    python benchmarks/kernels/precision_table.py                 # CPU
    python benchmarks/kernels/precision_table.py --device cuda

Logits z = offset + 3 * randn, rounded to the dtype; the oracle is the float64 reference
(``taylor_loss_reference``) on those same rounded logits with float64 parameters, and likewise
``F.cross_entropy`` in float64 for cross-entropy. A cell is the largest relative gradient error
over the cases: max |g - g_oracle| / max |g_oracle| per case (mean reduction). The cases cover the
kernels' three layouts: many classes one row at a time (64 x 1000), few classes in transposed lane
tiles (256 x 5), and N-d inputs in strided lane tiles (4 x 21 x 8 x 8); hard and soft targets;
orders 3 and 6 of the cross-entropy Taylor approximation, one column each (order 6's power-basis
coefficients are larger and cancel more in float32, whatever the offset). The reference column is
the reference run on the same (rounded) logits, in float32. float16 logits near 3e4 make nearly
one-hot rows whose mean-reduced gradients are float16 subnormals (~1e-7): their rounding is the error
there, the reference's too.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from taylorglo import TaylorPolynomial, taylor_loss, taylor_loss_reference

OFFSETS = (0.0, 1e3, 1e4, 3e4)
SHAPES = ((64, 1000), (256, 5), (4, 21, 8, 8))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_case(shape, offset, dtype, soft, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (offset + 3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    if soft:
        target = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1).to(dtype)
    else:
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return z.to(device), target.to(device)


def gradient(fn, z, target, **kw):
    z = z.detach().clone().requires_grad_(True)
    fn(z, target, **kw).backward()
    return z.grad


def relative_error(g, oracle):
    return ((g.double() - oracle).abs().max() / oracle.abs().max()).item()


def errors(offset, dtype, device):
    """Largest relative gradient error of TaylorLoss (kernel, per order), the reference and F.cross_entropy."""
    worst = {"taylorloss o3": 0.0, "taylorloss o6": 0.0, "reference": 0.0, "cross_entropy": 0.0}
    for shape in SHAPES:
        for soft in (False, True):
            for order in (3, 6):
                params = torch.tensor(TaylorPolynomial.cross_entropy(order).vector, dtype=torch.float64)
                z, t = make_case(shape, offset, dtype, soft, device, seed=order)
                t64 = t.double() if soft else t
                oracle = gradient(taylor_loss_reference, z.double(), t64, params=params.to(device))
                kernel = gradient(taylor_loss, z, t, params=params.to(device), backend="kernel")
                ref = gradient(taylor_loss_reference, z, t, params=params.to(device))
                key = f"taylorloss o{order}"
                worst[key] = max(worst[key], relative_error(kernel, oracle))
                worst["reference"] = max(worst["reference"], relative_error(ref, oracle))
            ce_oracle = gradient(F.cross_entropy, z.double(), t64)
            ce = gradient(F.cross_entropy, z, t)
            worst["cross_entropy"] = max(worst["cross_entropy"], relative_error(ce, ce_oracle))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=list(DTYPES))
    args = p.parse_args()
    print(
        "| dtype | offset | TaylorLoss order 3 | TaylorLoss order 6 | reference (float32) | F.cross_entropy |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.dtypes:
        for offset in OFFSETS:
            w = errors(offset, DTYPES[name], args.device)
            cells = " | ".join(
                f"{w[k]:.1e}" for k in ("taylorloss o3", "taylorloss o6", "reference", "cross_entropy")
            )
            print(f"| {name} | {offset:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
