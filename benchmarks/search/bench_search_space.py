"""Canonical vs original search space, and the search host's overhead per evaluation.

    python benchmarks/search/bench_search_space.py                      # synthetic evaluator, seconds
    python benchmarks/search/bench_search_space.py --trainer --seeds 3  # real digits trainings, minutes

For each space and seed, runs a search with the same task, population, generation limit and seed,
and reports the evaluations needed to first reach ``--target`` validation accuracy (or "-" when the
budget ran out), plus the best accuracy reached. With the synthetic evaluator (a cheap function of
the loss's gradient shape, see taylorglo.search.synthetic) it also reports the host's overhead per
evaluation: wall time of the search divided by evaluations, for an evaluator that does nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search


def evaluations_to_reach(directory: Path, target: float) -> int | None:
    recs = sorted(ExperimentDir(directory).evaluations(), key=lambda r: (r["generation"], r["index"]))
    for n, rec in enumerate(recs, 1):
        if rec.get("val_accuracy") is not None and rec["status"] == "ok" and rec["val_accuracy"] >= target:
            return n
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--trainer", action="store_true", help="real trainings on digits instead of the synthetic evaluator"
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--generations", type=int, default=12)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--target", type=float, default=None, help="validation accuracy to reach")
    args = p.parse_args()
    if args.trainer:
        task = {
            "dataset": "digits",
            "train_size": 300,
            "epochs": 6,
            "batch_size": 32,
            "lr": 0.02,
            "device": "cpu",
        }
        execution = {"backend": "local"}
        target = args.target or 0.9
    else:
        task = {"dataset": "digits"}
        execution = {"backend": "inline", "evaluator": "taylorglo.search.synthetic:evaluate"}
        target = args.target or 0.95
    print(f"target validation accuracy {target}; {args.population} x {args.generations}, {args.seeds} seeds")
    print(f"{'space':>10} {'seed':>4} {'evals to target':>16} {'best acc':>9} {'s/eval':>8}")
    for space in ("canonical", "original"):
        reached, bests = [], []
        for seed in range(args.seeds):
            cfg = {
                "task": task,
                "search": {
                    "space": space,
                    "seed": seed,
                    "population_size": args.population,
                    "generations": args.generations,
                },
                "execution": execution,
            }
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = run_search(Path(tmp) / "e", cfg, log=None, progress=False)
                wall = time.perf_counter() - t0
                n = evaluations_to_reach(Path(tmp) / "e", target)
            best_acc = 1.0 - res.best["fitness"]
            reached.append(n)
            bests.append(best_acc)
            print(
                f"{space:>10} {seed:>4} {n if n else '-':>16} {best_acc:>9.4f} {wall / res.evaluations:>8.4f}"
            )
        ok = [n for n in reached if n]
        med = statistics.median(ok) if ok else float("nan")
        print(
            f"{space:>10}  reached in {len(ok)}/{len(reached)}, median evaluations {med}, mean best {statistics.fmean(bests):.4f}"
        )


if __name__ == "__main__":
    main()
