"""Can an order-k Taylor polynomial do what the best tuned baseline does? (issue 17, validation only)

    python benchmarks/evidence/noisy/expansion_check.py benchmarks/evidence/noisy/mnist1d-symmetric-20.toml \\
        --loss gce:q=0.4 --orders 3 4 6 --lrs 0.2 0.4 0.8 --seeds 10 --out runs/noisy/expansion-check-20

A search of order k can only find order-k polynomials. Where every search of a setting lands at the
same distance behind a robust baseline (GCE, SCE), the question is whether that baseline is within
the family at all. This trains the baseline itself and its order-k Taylor expansion at (0.5, 0.5)
(:func:`taylorglo.train.expansion.expand_loss`, the same polynomial a search with ``start =
"loss:SPEC"`` starts from) for each order, at each learning rate, on fresh seeds of their own stream,
and reports the validation accuracy of each: if the order-3 expansion already falls behind its loss
by what the searches lose, the family, not the search, is what holds them back.

It reads the setting's task (label noise, validation split) from the protocol config and trains
through ``taylorglo.search.tune_arms`` (journaled under ``--out``: rerun the same command to resume).
The test split is never read. Writes ``expansion_check.json`` and ``expansion_check.md`` in ``--out``,
with the push of each arm on the true logit, ``-dL/dz_y`` at a prediction that gives the true class
p and the other classes equal shares (autograd through the trainer's own loss modules), and
``push.png``, its plot over p.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taylorglo.search import make_backend, tune_arms
from taylorglo.search.config import ExperimentConfig
from taylorglo.train import LossSpec, build_loss
from taylorglo.train.data import dataset_info
from taylorglo.train.expansion import expand_loss

STREAM = 7101  # disjoint from protocol_v2's tuning (7001) and final (7002) streams


def _protocol():
    path = Path(__file__).resolve().parents[1] / "protocol_v2.py"
    spec = importlib.util.spec_from_file_location("protocol_v2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_seeds(seed: int, n: int) -> list[int]:
    return [
        int(np.random.SeedSequence([seed % 2**32, STREAM, i]).generate_state(1)[0] % 2**31) for i in range(n)
    ]


def expansion_arms(
    loss: str, orders: Sequence[int], num_classes: int, x_centers: Sequence[float] = (0.5,)
) -> dict[str, dict]:
    """The loss itself and its order-k expansion at (a, 0.5) for each k and x center a, as tune_arms arms.

    The arms at a = 0.5 are named ``order-k expansion``, the others ``order-k expansion at x = a``.
    """
    arms = {loss: {"loss": loss}}
    for a in x_centers:
        for k in orders:
            poly = expand_loss(loss, k, ("x", "y"), num_classes=num_classes, center=(a, 0.5))
            name = f"order-{k} expansion" + ("" if a == 0.5 else f" at x = {a:g}")
            arms[name] = {"loss": str(LossSpec.taylor(poly.vector, k, poly.variables))}
    return arms


PUSH_POINTS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.9)


def push_curve(spec: str, num_classes: int, ps: Sequence[float]) -> list[float]:
    """``-dL/dz_y`` of one example whose prediction gives the true class p, the others (1 - p) / (C - 1)."""
    import torch

    loss = build_loss(spec, num_classes)
    out = []
    for p in ps:
        z = torch.full((1, num_classes), float(np.log((1 - p) / (num_classes - 1))), dtype=torch.float64)
        z[0, 0] = float(np.log(p))
        z.requires_grad_()
        value = loss(z, torch.zeros(1, dtype=torch.long))
        out.append(-float(torch.autograd.grad(value, z)[0][0, 0]))
    return out


def plot_push(arms: dict[str, dict], num_classes: int, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install matplotlib)")
        return False
    ps = [0.002 + 0.996 * i / 200 for i in range(201)]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, arm) in enumerate(arms.items()):
        ax.plot(ps, push_curve(arm["loss"], num_classes, ps), color=f"C{i % 10}", label=name)
    ax.set_xlabel("predicted probability of the labeled class p")
    ax.set_ylabel("push on its logit, -dL/dz_y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown(table: dict[str, dict], loss: str, lrs: Sequence[float], n: int, num_classes: int) -> str:
    lines = [
        f"# Order-k expansions of `{loss}`: validation accuracy (%)",
        "",
        f"Mean ± std over {n} seeds per cell (validation split of the setting; the test split is not read).",
        "",
        "| arm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best |",
        "|---" * (len(lrs) + 2) + "|",
    ]
    for arm, row in table.items():
        cells = []
        for lr in lrs:
            c = row["cells"].get(repr(float(lr)))
            cells.append(
                "-"
                if c is None
                else f"{100 * c['mean_val_accuracy']:.2f} ± {100 * c['std_val_accuracy']:.2f}"
            )
        best = row["best"]
        best_text = "-" if best is None else f"{100 * best['mean_val_accuracy']:.2f} (lr {best['lr']:g})"
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {best_text} |")
    lines += [
        "",
        "Push on the labeled class's logit, `-dL/dz_y`, with the labeled class at probability p and the "
        "other classes sharing the rest:",
        "",
        "| arm | " + " | ".join(f"p = {p:g}" for p in PUSH_POINTS) + " |",
        "|---" * (len(PUSH_POINTS) + 1) + "|",
    ]
    for arm, row in table.items():
        push = push_curve(row["spec"]["loss"], num_classes, PUSH_POINTS)
        lines.append(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in push) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a protocol_v2 config (its [task] and [execution] are used)")
    ap.add_argument("--loss", required=True, help="the trainer loss to expand, e.g. gce:q=0.4")
    ap.add_argument("--orders", type=int, nargs="+", default=[3])
    ap.add_argument(
        "--x-centers", type=float, nargs="+", default=[0.5], help="x centers of the expansions (y's is 0.5)"
    )
    ap.add_argument("--lrs", type=float, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, default=10, help="fresh seeds per cell")
    ap.add_argument("--seed", type=int, default=0, help="the seed of the seed stream")
    ap.add_argument(
        "--workers", type=int, help="parallel trainings (default: the config's execution.workers)"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.seeds < 2:
        raise SystemExit("--seeds must be at least 2 (a cell reports a mean and a std)")
    proto = _protocol()
    raw = proto.load(args.config)
    if args.workers is not None:
        raw.setdefault("execution", {})["workers"] = args.workers
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    num_classes = dataset_info(raw["task"]["dataset"]).num_classes
    try:
        arms = expansion_arms(args.loss, args.orders, num_classes, args.x_centers)
    except ValueError as exc:
        raise SystemExit(f"--loss {args.loss!r}: {exc}") from None
    directory = proto._container(raw, out / "trainings")
    execution = ExperimentConfig.from_dict(proto.variant_config(raw, raw["variants"][0])).execution
    backend = make_backend(execution)
    try:
        table = tune_arms(
            directory, arms, args.lrs, check_seeds(args.seed, args.seeds), backend=backend, log=proto.log
        )
    finally:
        backend.shutdown()
    (out / "expansion_check.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (out / "expansion_check.md").write_text(markdown(table, args.loss, args.lrs, args.seeds, num_classes))
    plot_push(arms, num_classes, out / "push.png")
    print(f"wrote {out / 'expansion_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
