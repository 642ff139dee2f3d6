"""Baselines tuned as hard as the found loss: ``python -m taylorglo.search baselines DIR``.

A found loss that "beats" cross-entropy at cross-entropy's learning rate often only acts as a
larger learning rate. Here every arm gets the same tuning budget on the experiment's task,
validation split only:

* ``cross-entropy`` and ``label-smoothing-EPS`` for each epsilon of
  ``search.baseline_label_smoothing``,
* ``chosen``: the loss the search chose (``selection.json``, else its best candidate), its
  learning rate re-tuned like the others,

each trained at every learning rate of the grid (``ExperimentConfig.baseline_grid``) on the
final selection's fresh seeds (the seeds the chosen loss was selected on). Each finished training
is appended to ``baselines.jsonl`` (fsynced) before the next is reported, so a killed run resumes
with what is missing; ``baselines.json`` holds the summary: every (arm, lr) cell, each arm's best
learning rate, the best tuned baseline (the better of cross-entropy and label smoothing) and the
chosen loss's comparison with it (Welch's t-test on validation accuracy, paired seeds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from taylorglo.search.config import ExperimentConfig
from taylorglo.search.journal import MEASURED, ExperimentDir, fault_point, fitness_of
from taylorglo.search.runner import (
    chosen_candidate,
    fresh_seeds,
    make_job,
    run_jobs,
    used_seeds,
)
from taylorglo.search.stats import compare_arms

__all__ = ["baseline_arms", "baseline_seeds", "run_baselines", "summarize_baselines", "tune_arms"]


def baseline_arms(cfg: ExperimentConfig, chosen: dict | None) -> dict[str, dict]:
    """name -> {"loss": spec} or {"vector": [...]} of every arm that is tuned."""
    arms: dict[str, dict] = {"cross-entropy": {"loss": "cross-entropy"}}
    for eps in cfg.search.baseline_label_smoothing:
        arms[f"label-smoothing-{eps:g}"] = {"loss": f"cross-entropy;label_smoothing={eps!r}"}
    if chosen is not None:
        arms["chosen"] = {"vector": list(chosen["vector"])}
    return arms


def baseline_seeds(exp: ExperimentDir, cfg: ExperimentConfig) -> list[int]:
    """The final selection's fresh seeds (the same seeds the chosen loss was selected on)."""
    selection = exp.read_selection()
    if selection is not None and selection.get("seeds"):
        return [int(s) for s in selection["seeds"]]
    return fresh_seeds(cfg.search.seed, cfg.search.final_seeds, "final", avoid=used_seeds(exp))


def run_baselines(
    directory,
    *,
    lrs: list[float] | None = None,
    backend=None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train what ``baselines.jsonl`` lacks, then write and return the summary (``baselines.json``).

    Args:
        directory: a search experiment directory (its task, seeds and chosen loss are used).
        lrs: the learning-rate grid; None = ``ExperimentConfig.baseline_grid()``.
        backend: an evaluation backend (not shut down here); None = the configured one.
    """
    exp = ExperimentDir(directory)
    if not exp.exists():
        raise FileNotFoundError(f"{exp.path} is not an experiment directory (no config.json)")
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    chosen = chosen_candidate(exp, cfg.search.fitness)
    arms = baseline_arms(cfg, chosen)
    grid = sorted(float(v) for v in (lrs or cfg.baseline_grid()))
    seeds = baseline_seeds(exp, cfg)
    table = tune_arms(directory, arms, grid, seeds, backend=backend, log=log)
    summary = summarize_baselines(table, grid, seeds, chosen)
    exp.write_baselines(summary)
    return summary


def tune_arms(
    directory,
    arms: dict[str, dict],
    grid: list[float],
    seeds: list[int],
    *,
    backend=None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict]:
    """Train every arm at every learning rate of ``grid`` on every seed (what is missing), validation only.

    Args:
        directory: an experiment directory; its task is trained and ``baselines.jsonl`` journals
            each finished training (fsynced), keyed by (arm, spec, lr, seed), so a killed run
            resumes with what is missing and an arm whose spec changed is trained anew.
        arms: name -> {"loss": trainer loss spec} or {"vector": Taylor parameter vector}.
    Returns name -> {"spec", "cells": {repr(lr): cell}, "best": the cell with the best mean
    validation accuracy, or None}; a cell holds n, mean/std validation accuracy (a failed training
    counts as ``1 - search.penalty``), failures, the per-seed accuracies in seed order and lr.
    """
    from taylorglo.search.backends import make_backend

    exp = ExperimentDir(directory)
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    s = cfg.search
    grid = [float(v) for v in grid]
    seeds = [int(v) for v in seeds]

    def finish(key, result: dict, attempts: int) -> None:
        arm, lr, r = key
        rec = {
            "arm": arm,
            "spec": arms[arm],
            "lr": lr,
            "replica": r,
            "seed": seeds[r],
            "attempts": attempts,
            "status": str(result.get("status", "failed")),
            "val_accuracy": result.get("val_accuracy"),
            "error": result.get("error"),
            "finished_at": time.time(),
        }
        rec["fitness"] = fitness_of(rec, s.penalty)
        exp.append_baseline(rec)
        fault_point(f"after-baseline:{arm}:{lr}:{r}")
        if log is not None:
            acc = rec["val_accuracy"]
            log(
                f"  {arm} lr {lr:.4g} seed {seeds[r]}: {rec['status']}"
                + (f" val {acc:.4f}" if isinstance(acc, (int, float)) else "")
            )

    def missing_jobs() -> list:
        have = {
            (r["arm"], r["lr"], r["seed"])
            for r in exp.baseline_records()
            if r.get("spec") == arms.get(r["arm"])
        }
        jobs = []
        for arm, spec in arms.items():
            for lr in grid:
                for r, seed in enumerate(seeds):
                    if (arm, lr, seed) in have:
                        continue
                    jobs.append(
                        (
                            (arm, lr, r),
                            lambda attempt, spec=spec, lr=lr, r=r, seed=seed: make_job(
                                cfg,
                                generation=-2,
                                index=0,
                                replica=r,
                                attempt=attempt,
                                seed=seed,
                                vector=spec.get("vector"),
                                loss=spec.get("loss"),
                                lr=lr,
                            ),
                        )
                    )
        return jobs

    if missing_jobs():
        # Training writes the journal: one process at a time (a second one would train the same
        # cells again). The lock is the search's, so a search and a tuning of one directory do not
        # overlap either; reading a complete table needs no lock.
        exp.acquire_lock()
        try:
            jobs = missing_jobs()  # what is still missing once the lock is ours
            if jobs:
                if log is not None:
                    log(
                        f"tuning: {len(arms)} arms x {len(grid)} learning rates x {len(seeds)} seeds "
                        f"({len(jobs)} trainings to run)"
                    )
                own = backend is None
                if own:
                    backend = make_backend(cfg.execution, retries=s.retries)
                try:
                    run_jobs(backend, jobs, retries=s.retries, finish=finish)
                finally:
                    if own:
                        backend.shutdown()
        finally:
            exp.release_lock()
    by_key = {}
    for rec in exp.baseline_records():
        if rec.get("spec") == arms.get(rec["arm"]):
            by_key.setdefault((rec["arm"], rec["lr"], rec["seed"]), rec)
    table: dict[str, dict] = {}
    for arm in arms:
        cells = {}
        for lr in grid:
            recs = [by_key[(arm, lr, seed)] for seed in seeds if (arm, lr, seed) in by_key]
            if len(recs) == len(seeds):
                cells[repr(lr)] = dict(_cell(recs), lr=lr)
        best = max(cells.values(), key=lambda c: c["mean_val_accuracy"]) if cells else None
        table[arm] = {"spec": arms[arm], "cells": cells, "best": best}
    return table


def _cell(recs: list[dict]) -> dict:
    accs = [1.0 - r["fitness"] for r in recs]  # a failed training counts as 1 - penalty
    return {
        "n": len(recs),
        "mean_val_accuracy": statistics.fmean(accs),
        "std_val_accuracy": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "failures": sum(1 for r in recs if r["status"] not in MEASURED),
        "val_accuracies": accs,
    }


def summarize_baselines(
    table: dict[str, dict], grid: list[float], seeds: list[int], chosen: dict | None
) -> dict:
    """The tuning table, the best tuned baseline (not ``chosen``) and the chosen loss against it."""
    complete = all(len(t["cells"]) == len(grid) for t in table.values())
    baselines = [a for a in table if a != "chosen" and table[a]["best"] is not None]
    best_baseline = max(baselines, key=lambda a: table[a]["best"]["mean_val_accuracy"]) if baselines else None
    out: dict = {
        "grid": grid,
        "seeds": seeds,
        "complete": complete,
        "arms": table,
        "best_baseline": None,
        "chosen": None,
        "comparison": None,
    }
    if best_baseline is not None:
        b = table[best_baseline]["best"]
        out["best_baseline"] = {
            "arm": best_baseline,
            "spec": table[best_baseline]["spec"],
            "lr": b["lr"],
            "mean_val_accuracy": b["mean_val_accuracy"],
        }
    if chosen is not None and table.get("chosen", {}).get("best") is not None:
        c = table["chosen"]["best"]
        out["chosen"] = {
            "vector": chosen["vector"],
            "searched_lr": chosen.get("lr"),
            "lr": c["lr"],
            "mean_val_accuracy": c["mean_val_accuracy"],
        }
        if best_baseline is not None and len(seeds) > 1:
            out["comparison"] = {
                "a": "chosen (re-tuned lr)",
                "b": best_baseline,
                "metric": "val_accuracy",
                **compare_arms(c["val_accuracies"], table[best_baseline]["best"]["val_accuracies"]),
            }
    return out
