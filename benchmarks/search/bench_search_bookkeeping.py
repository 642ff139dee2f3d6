"""The search host's time per generation over a long run: does the bookkeeping stay flat?

    python benchmarks/search/bench_search_bookkeeping.py                     # 1,000 generations of 16
    python benchmarks/search/bench_search_bookkeeping.py --generations 200   # a quicker look

Runs a search with the synthetic evaluator (``taylorglo.search.synthetic``, a cheap function of the
loss's shape) in the search process (backend ``inline``), no final selection, and times each
generation from the end of the previous one (the run log's callback). ``total`` is the whole
generation, ``host`` the same minus the evaluator's own time (the records' ``wall_time``): sampling,
journal, checkpoint, summary, run log and TensorBoard (when installed). Printed: the mean and median
ms per generation over generations 1-100, 400-500 and 900-1000 (scaled to ``--generations``), the
journal's size, the CMA-ES state's size and the process's resident memory (Linux). Flat bookkeeping: the three windows agree within noise.
Most of a generation's host time is fsync (about 24 per generation of 16: journal lines and
checkpoints; the training logs' tails are written atomically without fsync since they hold nothing a
resume reads, which took the host time from 58 to 50 ms per generation here), so the absolute
numbers follow the disk. Not a test: timings depend
on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generations", type=int, default=1000)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--dir", help="experiment directory (default: a temporary one, removed after)")
    args = p.parse_args()
    config = {
        "task": {"dataset": "digits"},
        "search": {
            "order": 3,
            "population_size": args.population,
            "generations": args.generations,
            "seed": 0,
            "final_top_k": 0,
        },
        "execution": {"backend": "inline", "evaluator": "taylorglo.search.synthetic:evaluate"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp) / "exp"
        stamps: list[float] = []
        rss: list[float] = []
        page = os.sysconf("SC_PAGE_SIZE") / 1e6

        def tick(line: str) -> None:
            stamps.append(time.perf_counter())
            with open("/proc/self/statm") as fh:  # Linux; resident set size in MB
                rss.append(int(fh.read().split()[1]) * page)

        start = time.perf_counter()
        stamps.append(start)
        run_search(directory, config, progress=False, log=tick)
        exp = ExperimentDir(directory)
        evaluator: dict[int, float] = {}
        for rec in exp.evaluations():
            g = rec["generation"]
            evaluator[g] = evaluator.get(g, 0.0) + float(rec["wall_time"] or 0.0)
        total = [1000 * (b - a) for a, b in zip(stamps, stamps[1:])]
        host = [t - 1000 * evaluator.get(g, 0.0) for g, t in enumerate(total)]
        n = len(total)
        print(
            f"{n} generations of {args.population} in {stamps[-1] - start:.1f} s "
            f"(synthetic evaluator, inline backend)"
        )
        print(
            f"{'generations':>14} {'total ms/gen':>13} {'(median)':>9} {'host ms/gen':>12} {'(median)':>9} "
            f"{'RSS MB at end':>14}"
        )
        for lo, hi in ((1, 100), (400, 500), (900, 1000)):
            a, b = max(1, round(lo * n / 1000)), max(1, round(hi * n / 1000))
            t, h = total[a - 1 : b], host[a - 1 : b]
            print(
                f"{f'{a}-{b}':>14} {statistics.fmean(t):13.1f} {statistics.median(t):9.1f} "
                f"{statistics.fmean(h):12.1f} {statistics.median(h):9.1f} {rss[b - 1]:14.1f}"
            )
        print(f"journal.jsonl: {exp.journal_path.stat().st_size / 1e6:.2f} MB")
        print(f"state.pkl: {exp.state_path.stat().st_size / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
