"""Where the time of one small TaylorLoss forward+backward goes (CPU), piece by piece.

    python benchmarks/kernels/overhead_breakdown.py [--shape 256x10] [--threads 1] [--profile]

At small shapes the kernels are a few microseconds and the call is bound by what surrounds them.
This times, interleaved (fastest call, and the median), each layer that ``taylorglo.taylor_loss``
adds on the way to the compiled ops:

- ``F.cross_entropy`` forward+backward (the yardstick),
- the forward op ``hard_forward`` (``soft_forward``) alone, and the backward op alone, called directly,
- the same forward op through autograd with precomputed coefficients, plus ``backward()``,
- the op ``TaylorLoss`` calls, ``hard_loss`` (``soft_loss``): the forward op and the mean reduction
  under one autograd node, plus ``backward()``,
- ``power_basis`` alone (parameters -> (k+1, k+1) power-basis coefficients: small tensor ops; a
  ``TaylorLoss`` module caches its result while its params and progress are unchanged),
- the hard-target coefficient matrix alone (``torch.tensor`` of the label powers, a (2, k+1) matmul),
- ``TaylorLoss`` forward+backward in full.

``--profile`` also prints the ``torch.profiler`` operator table of one full call (counts, self CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from taylorglo.loss import power_basis  # noqa: E402


def pieces(case: common.Case, order: int):
    logits, target = common.make_inputs(case)
    module = common.make_contender("taylorloss", order, "cpu")
    params = module.params.to(torch.float32)
    hard = case.target == "hard"
    basis = power_basis(params, order, module.variables)
    xs = torch.tensor([[0.0**i for i in range(order + 1)], [1.0**i for i in range(order + 1)]])
    coef = (xs @ basis).contiguous() if hard else basis.contiguous()
    x = logits.detach()
    ops = torch.ops.taylorglo

    if hard:
        fwd = lambda: ops.hard_forward.default(x, target, coef, -100)  # noqa: E731
        loss0, stats0 = fwd()
        bwd = lambda: ops.hard_backward.default(torch.ones_like(loss0), x, target, coef, stats0, -100)  # noqa: E731
    else:
        fwd = lambda: ops.soft_forward.default(x, target, coef)  # noqa: E731
        loss0, stats0 = fwd()
        bwd = lambda: ops.soft_backward.default(torch.ones_like(loss0), x, target, coef, stats0)  # noqa: E731

    def op_autograd():
        logits.grad = None
        if hard:
            loss, _ = ops.hard_forward.default(logits, target, coef, -100)
        else:
            loss, _ = ops.soft_forward.default(logits, target, coef)
        loss.mean().backward()

    def loss_op_autograd():  # what TaylorLoss calls: forward kernel + mean under one autograd node
        logits.grad = None
        if hard:
            ops.hard_loss.default(logits, target, coef, -100, 1).backward()
        else:
            ops.soft_loss.default(logits, target, coef, 1).backward()

    def basis_only():
        power_basis(params, order, module.variables)

    def coef_only():
        t = torch.tensor([[0.0**i for i in range(order + 1)], [1.0**i for i in range(order + 1)]])
        (t @ basis).contiguous()

    return {
        "F.cross_entropy fwd+bwd": lambda: common.forward_backward(F.cross_entropy, logits, target),
        "forward op alone": fwd,
        "backward op alone": bwd,
        "forward op via autograd + backward": op_autograd,
        "mean-loss op (hard_loss/soft_loss) via autograd + backward": loss_op_autograd,
        "power_basis only": basis_only,
        "hard coef matrix only": coef_only if hard else None,
        "TaylorLoss fwd+bwd (full)": lambda: common.forward_backward(module, logits, target),
    }, (module, logits, target)


def measure(fns: dict, seconds: float, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for r in range(rounds):
        names = list(fns)
        names = names[r % len(names) :] + names[: r % len(names)]
        for name in names:
            end = time.perf_counter() + seconds / rounds / len(fns)
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
    return {name: (min(ts), statistics.median(ts)) for name, ts in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="256x10")
    p.add_argument("--threads", type=int, default=1, help="1 by default: a loaded machine stalls 2")
    p.add_argument("--targets", nargs="+", default=["hard", "soft"])
    p.add_argument("--orders", nargs="+", type=int, default=[3, 6])
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per case")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    print("| case | piece | fastest call | x F.cross_entropy | median call |\n|---|---|---|---|---|")
    for target in args.targets:
        for order in args.orders:
            case = common.Case(shape, "float32", target)
            fns, (module, logits, tgt) = pieces(case, order)
            fns = {k: v for k, v in fns.items() if v is not None}
            med = measure(fns, args.seconds, rounds=20)
            ce = med["F.cross_entropy fwd+bwd"][0]
            for name, (best, median) in med.items():
                print(
                    f"| {case.label()} {target} o{order} | {name} | {best * 1e6:.1f} us | {best / ce:.2f} "
                    f"| {median * 1e6:.1f} us |"
                )
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(100):
                        common.forward_backward(module, logits, tgt)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return 0


if __name__ == "__main__":
    sys.exit(main())
