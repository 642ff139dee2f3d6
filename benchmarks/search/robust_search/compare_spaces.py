"""Which normalization keeps sigma bounded: the same short search on digits in three spaces.

    python benchmarks/search/robust_search/compare_spaces.py --out runs/compare-spaces

Arms (each: order 3, 2 seeds per candidate, population 8, 15 generations, CMA-ES seed 0):
``canonical`` with the task's fixed learning rate (the first evidence protocol's setting),
``normalized`` with ``push`` and with ``norm``, both with a searched learning rate. Prints sigma
per generation and the spread of the candidates' scale (push relative to cross-entropy's) and
learning rate, and writes ``summary.json``. Resumable: each arm is an experiment directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from taylorglo.search.analysis import generation_table  # noqa: E402
from taylorglo.search.config import default_experiment  # noqa: E402
from taylorglo.search.runner import run_search  # noqa: E402

TASK = {**default_experiment()["task"], "num_threads": 1}  # the default experiment's digits task
COMMON = {
    "order": 3,
    "population_size": 8,
    "generations": 15,
    "seeds_per_candidate": 2,
    "seed": 0,
    "final_top_k": 0,
}
ARMS = {
    "canonical-fixed-lr": {"space": "canonical"},
    "normalized-push": {
        "space": "normalized",
        "normalization": "push",
        "learning_rate": "searched",
        "lr_bounds": [0.005, 0.16],
    },
    "normalized-norm": {
        "space": "normalized",
        "normalization": "norm",
        "learning_rate": "searched",
        "lr_bounds": [0.005, 0.16],
    },
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/compare-spaces")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    out = Path(args.out)
    summary = {}
    for name, search in ARMS.items():
        cfg = {
            "task": TASK,
            "search": {**COMMON, **search},
            "execution": {
                "backend": "local" if args.workers > 1 else "inline",
                "workers": args.workers,
                "threads_per_worker": 1,
            },
        }
        result = run_search(
            out / name, cfg, progress=False, log=lambda line, n=name: print(f"{n}: {line}", flush=True)
        )
        rows = generation_table(out / name)
        summary[name] = {
            "sigma": [r["sigma"] for r in rows],
            "best_fitness": [r["best_fitness"] for r in rows],
            "median_fitness": [r["median_fitness"] for r in rows],
            "scale_median": [r["scale_median"] for r in rows],
            "scale_spread": [(r["scale_min"], r["scale_max"]) for r in rows],
            "lr_median": [r["lr_median"] for r in rows],
            "collapsed_share": [r["collapsed_share"] for r in rows],
            "evaluations": result.evaluations,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for name, s in summary.items():
        print(f"\n{name}: sigma " + " ".join(f"{v:.3g}" for v in s["sigma"]))
        print("  best fitness " + " ".join(f"{v:.3f}" for v in s["best_fitness"]))
        print("  median scale " + " ".join(f"{v:.3g}" for v in s["scale_median"]))
        if s["lr_median"][0] is not None:
            print("  median lr " + " ".join(f"{v:.3g}" for v in s["lr_median"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
