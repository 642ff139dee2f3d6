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
The test split is never read. Writes ``expansion_check.json`` and ``expansion_check.md`` in ``--out``.
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
from taylorglo.train import LossSpec
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


def expansion_arms(loss: str, orders: Sequence[int], num_classes: int) -> dict[str, dict]:
    """The loss itself and its order-k expansion for each k, as tune_arms arms."""
    arms = {loss: {"loss": loss}}
    for k in orders:
        poly = expand_loss(loss, k, ("x", "y"), num_classes=num_classes)
        arms[f"order-{k} expansion"] = {"loss": str(LossSpec.taylor(poly.vector, k, poly.variables))}
    return arms


def markdown(table: dict[str, dict], loss: str, lrs: Sequence[float], n: int) -> str:
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
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a protocol_v2 config (its [task] and [execution] are used)")
    ap.add_argument("--loss", required=True, help="the trainer loss to expand, e.g. gce:q=0.4")
    ap.add_argument("--orders", type=int, nargs="+", default=[3])
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
        arms = expansion_arms(args.loss, args.orders, num_classes)
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
    (out / "expansion_check.md").write_text(markdown(table, args.loss, args.lrs, args.seeds))
    print(f"wrote {out / 'expansion_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
