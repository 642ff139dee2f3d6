"""Reading an experiment directory: status, the generations table, the best loss, plots, one-shot
evaluations over seeds (the original's one-shot runs) and Welch's t-test between two sets of them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from taylorglo.search.config import ExperimentConfig
from taylorglo.search.journal import ExperimentDir, atomic_write
from taylorglo.search.runner import (
    MEASURED,
    aggregate_candidates,
    chosen_candidate,
    fresh_seeds,
    generation_seed,
    make_job,
    missing_evaluations,
    used_seeds,
)
from taylorglo.search.stats import welch_ttest

__all__ = [
    "best_record",
    "evaluate_losses",
    "experiment_status",
    "formula_of",
    "generation_table",
    "plot_experiment",
    "welch_ttest",
]


def _config(exp: ExperimentDir) -> ExperimentConfig:
    if not exp.exists():
        raise FileNotFoundError(f"{exp.path} is not an experiment directory (no config.json)")
    return ExperimentConfig.from_dict(exp.read_config(), validate_task=False)


def formula_of(vector: Sequence[float], order: int, variables: Sequence[str] = ("x", "y")) -> str:
    """The polynomial's formula (``TaylorPolynomial.formula`` when available, else its repr)."""
    from taylorglo.polynomial import TaylorPolynomial

    poly = TaylorPolynomial(list(vector), order, tuple(variables))
    try:
        return poly.formula()
    except Exception:
        return repr(poly)


def best_record(directory) -> dict | None:
    """The candidate with the lowest fitness aggregated over its seeds (the first of ties).

    A dict of ``taylorglo.search.runner.aggregate_candidates``: generation, index, vector, lr,
    fitness, val_accuracy (mean over its measured seeds), per-seed lists.
    """
    exp = ExperimentDir(directory)
    cands = aggregate_candidates(exp.evaluations(), _config(exp).search.fitness)
    return min(cands, key=lambda c: c["fitness"]) if cands else None


def experiment_status(directory) -> dict:
    """Where an experiment stands: generations done/open, evaluations, failures, best, the final
    selection and the tuned baselines, integrity, completeness.

    ``integrity``: ``files`` (``ExperimentDir.integrity``: per JSONL file the readable records,
    those without a checksum, corrupt lines not yet quarantined, lines quarantined so far),
    ``missing`` ((generation, index, replica) of told generations without a record) and
    ``final_missing`` ((contender id, replica) a finished final selection lacks in
    ``final.jsonl``). ``complete`` needs nothing missing: ``run`` evaluates what is.
    """
    exp = ExperimentDir(directory)
    cfg = _config(exp)
    s = cfg.search
    state = exp.read_state()
    done = 0
    if state is not None:
        from taylorglo.search.strategy import CMAStrategy

        done = CMAStrategy.loads(state).generation
    records = list(exp.evaluations())
    limit = s.generations
    if s.max_evaluations:
        limit = min(limit, s.max_evaluations // s.population_size)
    open_gen = done if exp.read_population(done) is not None else None
    failed = [r for r in records if r["status"] not in MEASURED]
    cands = aggregate_candidates(records, s.fitness)
    best = min(cands, key=lambda c: c["fitness"]) if cands else None
    selection = exp.read_selection()
    searched = done >= limit and open_gen is None
    selected = not s.final_top_k or bool(selection and selection.get("chosen"))
    missing = [
        (population["generation"], cand["index"], replica)
        for population, pairs in missing_evaluations(exp, range(done))
        for cand, replica in pairs
    ]
    final_missing = []
    if selection and selection.get("chosen"):
        have = {(r["id"], r["replica"]) for r in exp.final_records()}
        final_missing = [
            (c["id"], r)
            for c in selection["contenders"]
            for r in range(len(selection["seeds"]))
            if (c["id"], r) not in have
        ]
    return {
        "directory": str(exp.path),
        "generations_done": done,
        "generation_limit": limit,
        "open_generation": open_gen,
        "open_generation_evaluated": len(exp.evaluations_of(open_gen)) if open_gen is not None else 0,
        "population_size": s.population_size,
        "seeds_per_candidate": s.seeds_per_candidate,
        "evaluations": len(records),
        "failures": len(failed),
        "failed": failed,
        "best": best,
        "selection": selection,
        "baselines": exp.read_baselines(),
        "integrity": {"files": exp.integrity(), "missing": missing, "final_missing": final_missing},
        "complete": searched and selected and not missing and not final_missing,
        "running": exp.lock_holder(),
    }


def generation_table(directory) -> list[dict]:
    """One row per generation with evaluations, with the diagnostics of drift.

    Columns: candidates and trainings evaluated, best/mean/median fitness (aggregated per
    candidate), best validation accuracy, ``failed_share`` and ``collapsed_share`` of the
    trainings, invariant violations, ``sigma`` (after the generation's update, as the run log
    prints it; before it for a generation still open), the spread (min/median/max) of the
    candidates' ``scale`` (push at the uniform prediction relative to cross-entropy's, see
    ``taylorglo.search.space.push_scale``) and of their learning rates when searched.
    """
    from taylorglo.search.runner import is_collapsed
    from taylorglo.search.space import push_scale

    exp = ExperimentDir(directory)
    cfg = _config(exp)
    s = cfg.search
    n = cfg.inferred_num_classes() or 0
    by_gen: dict[int, list[dict]] = {}
    for rec in exp.evaluations():
        by_gen.setdefault(rec["generation"], []).append(rec)
    rows = []
    for g in sorted(by_gen):
        recs = by_gen[g]
        cands = aggregate_candidates(recs, s.fitness)
        fit = [c["fitness"] for c in cands]
        acc = [c["val_accuracy"] for c in cands if c["val_accuracy"] is not None]
        summary = exp.read_summary(g)
        if summary is not None:
            sigma = summary["sigma"]
        else:
            stored = exp.read_population(g)
            sigma = stored[0]["sigma"] if stored else None
        row = {
            "generation": g,
            "candidates": len(cands),
            "trainings": len(recs),
            "best_fitness": min(fit),
            "mean_fitness": statistics.fmean(fit),
            "median_fitness": statistics.median(fit),
            "best_val_accuracy": max(acc) if acc else None,
            "failures": sum(1 for r in recs if r["status"] not in MEASURED),
            "failed_share": sum(1 for r in recs if r["status"] not in MEASURED) / len(recs),
            "collapsed_share": sum(1 for r in recs if is_collapsed(r, n)) / len(recs),
            "invariant_violations": sum(1 for c in cands if c.get("violates_invariant")),
            "sigma": sigma,
            "closed": summary is not None,
        }
        scales = [push_scale(c["vector"], s.order, s.variables, n) for c in cands] if n >= 2 else []
        lrs = [c["lr"] for c in cands if c["lr"] is not None]
        for name, values in (("scale", scales), ("lr", lrs)):
            values = sorted(values)
            row[f"{name}_min"] = values[0] if values else None
            row[f"{name}_median"] = statistics.median(values) if values else None
            row[f"{name}_max"] = values[-1] if values else None
        rows.append(row)
    return rows


def table_text(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_csv(path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def plot_experiment(directory) -> list[Path]:
    """Fitness over generations and the best loss's shape against cross-entropy, as PNGs in ``directory``.

    Returns the written paths; an empty list when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    exp = ExperimentDir(directory)
    cfg = _config(exp)
    rows = generation_table(directory)
    out = []
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        gens = [r["generation"] for r in rows]
        ax.plot(gens, [r["best_fitness"] for r in rows], "o-", label="best")
        ax.plot(gens, [r["median_fitness"] for r in rows], "s--", label="median")
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness (1 - validation accuracy)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = exp.path / "fitness.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    best = best_record(directory)
    if best is not None:
        from taylorglo.polynomial import TaylorPolynomial

        s = cfg.search
        poly = TaylorPolynomial(best["vector"], s.order, tuple(s.variables))
        ce = TaylorPolynomial.cross_entropy(s.order, variables=tuple(s.variables))
        ps = [0.001 + 0.998 * i / 200 for i in range(201)]
        t = {"t": 1.0} if poly.has_progress else {}
        fig, ax = plt.subplots(figsize=(6, 4))
        for x, style in ((1.0, "-"), (0.0, "--")):
            ax.plot(ps, [poly(x, p, **t) for p in ps], style, color="C0", label=f"best f({x:g}, p)")
            ax.plot(ps, [ce(x, p, **t) for p in ps], style, color="C1", label=f"CE Taylor f({x:g}, p)")
        ax.plot(ps, [math.log(p) for p in ps], ":", color="C2", label="log p (cross-entropy, x=1)")
        ax.set_ylim(-6, 3)
        ax.set_xlabel("predicted probability p")
        ax.set_ylabel("f (the loss is -sum_c f)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = exp.path / "best_loss.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out


# ----------------------------------------------------------------------------------------------
def evaluate_losses(
    directory,
    losses: dict[str, dict],
    seeds: Sequence[int],
    *,
    evaluate_test: bool = True,
    backend=None,
    log=print,
) -> dict[str, list[dict]]:
    """Train each loss once per seed on the experiment's task (one-shot runs); results are cached.

    Args:
        losses: name -> {"vector": [...]} (a Taylor loss of the experiment's order) or {"loss": spec},
            optionally with "lr" (replacing the task's learning rate).
        seeds: training seeds (the same for every loss: paired, common random numbers).
    Returns name -> list of result dicts (status, val_accuracy, test_accuracy, seed, ...). Results
    are stored in ``DIR/evaluations/<name>.jsonl`` and reused by later calls with the same seeds.
    """
    from taylorglo.search.backends import make_backend

    exp = ExperimentDir(directory)
    cfg = _config(exp)
    edir = exp.path / "evaluations"
    edir.mkdir(exist_ok=True)
    results: dict[str, list[dict]] = {}
    todo = []
    for name, spec in losses.items():
        path = edir / f"{name}.jsonl"
        cached = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("spec") == spec:
                    cached[rec["seed"]] = rec
        results[name] = [cached[s] for s in seeds if s in cached]
        todo += [(name, spec, s) for s in seeds if s not in cached]
        if log is not None and results[name]:
            log(f"  {name}: {len(results[name])} of {len(seeds)} seeds already trained ({path}); reused")
    if todo:
        own = backend is None
        if own:
            backend = make_backend(cfg.execution, retries=cfg.search.retries)
        try:
            futures = []
            for name, spec, seed in todo:
                job = make_job(
                    cfg,
                    generation=-1,
                    index=0,
                    seed=seed,
                    vector=spec.get("vector"),
                    loss=spec.get("loss"),
                    lr=spec.get("lr"),
                    evaluate_test=evaluate_test,
                )
                futures.append((name, spec, seed, backend.submit(job)))
            for name, spec, seed, fut in futures:
                try:
                    res = fut.result()
                except Exception as exc:
                    res = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                res.pop("log", None)
                rec = {"seed": seed, "spec": spec, **res}
                with open(edir / f"{name}.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
                results[name].append(rec)
                if log is not None:
                    log(
                        f"  {name} seed {seed}: {res.get('status')} val {_fmt(res.get('val_accuracy'))} test {_fmt(res.get('test_accuracy'))}"
                    )
        finally:
            if own:
                backend.shutdown()
    for name in results:
        order = {s: i for i, s in enumerate(seeds)}
        results[name].sort(key=lambda r: order.get(r["seed"], 0))
    return results


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def evaluation_seeds(directory, n: int) -> list[int]:
    """Seeds for one-shot evaluations: those of the experiment's first n generations."""
    cfg = _config(ExperimentDir(directory))
    return [generation_seed(cfg.search.seed, g) for g in range(n)]


def comparison_seeds(directory, n: int) -> list[int]:
    """Seeds for the final test comparison: a stream no generation, selection or baseline uses."""
    exp = ExperimentDir(directory)
    return fresh_seeds(_config(exp).search.seed, n, "test", avoid=used_seeds(exp))


def compare_with_baseline(directory, seeds: int, *, test: bool = True, backend=None, log=print) -> dict:
    """Train the chosen loss and the best tuned baseline on ``seeds`` fresh seeds and compare them.

    The chosen loss is the final selection's choice (else the best candidate) at its re-tuned
    learning rate when ``baselines`` ran (else at its searched learning rate or the task's); the
    baseline is the best tuned arm of ``baselines.json``, or cross-entropy at the task's learning
    rate when the baselines were never tuned (said in ``"note"``: such a comparison flatters the
    found loss). Results are cached in ``DIR/evaluations/``. Returns the arms, their per-seed
    results and, per metric, Welch's t-test, Mann-Whitney and wins (``taylorglo.search.stats``).
    """
    from taylorglo.search.stats import compare_arms

    exp = ExperimentDir(directory)
    cfg = _config(exp)
    chosen = chosen_candidate(exp, cfg.search.fitness)
    if chosen is None:
        raise RuntimeError(f"{directory} has no evaluations yet")
    tuned = exp.read_baselines()
    note = None
    chosen_spec = {"vector": list(chosen["vector"])}
    if tuned and tuned.get("best_baseline") and tuned.get("chosen"):
        chosen_spec["lr"] = tuned["chosen"]["lr"]
        base = tuned["best_baseline"]
        base_name = base["arm"]
        base_spec = dict(base["spec"], lr=base["lr"])
    else:
        if chosen.get("lr") is not None:
            chosen_spec["lr"] = chosen["lr"]
        base_name = "cross-entropy"
        base_spec = {"loss": "cross-entropy"}
        note = (
            "the baselines were not tuned (run `python -m taylorglo.search baselines DIR`): "
            "cross-entropy at the task's learning rate is not a fair baseline"
        )
    seed_list = comparison_seeds(directory, seeds)
    arms = {"chosen": chosen_spec, base_name: base_spec}
    if log is not None:
        log(
            f"training the chosen loss and {base_name} on {len(seed_list)} fresh seeds"
            + (" (test split read once per arm and seed)" if test else " (validation only)")
        )
        if note:
            log(f"note: {note}")
    res = evaluate_losses(directory, arms, seed_list, evaluate_test=test, backend=backend, log=log)
    out: dict = {"arms": arms, "baseline": base_name, "seeds": seed_list, "results": res, "note": note}
    for metric in ("val_accuracy", "test_accuracy"):
        a = [r[metric] for r in res["chosen"] if isinstance(r.get(metric), (int, float))]
        b = [r[metric] for r in res[base_name] if isinstance(r.get(metric), (int, float))]
        if len(a) > 1 and len(b) > 1:
            out[metric] = compare_arms(a, b)
    return out


def report_lines(directory) -> list[str]:
    """The final selection (per-contender numbers, the choice) and the tuned-baseline comparison, as text."""
    exp = ExperimentDir(directory)
    lines: list[str] = []
    selection = exp.read_selection()
    if selection and selection.get("table"):
        lines.append(f"\nfinal selection on {len(selection['seeds'])} fresh seeds (validation):")
        rows = [
            {
                "contender": c["id"],
                "search_fitness": c.get("search_fitness"),
                "lr": c.get("lr"),
                "mean_val_accuracy": c["mean_val_accuracy"],
                "std": c["std_val_accuracy"],
                "failures": c["failures"],
                "collapses": c["collapses"],
            }
            for c in selection["table"]
        ]
        lines.append(table_text(rows))
        lines.append(f"chosen: {selection['chosen']['id']}")
    elif selection:
        lines.append("\nfinal selection: in progress")
    tuned = exp.read_baselines()
    if tuned and tuned.get("best_baseline"):
        bb = tuned["best_baseline"]
        line = (
            f"best tuned baseline: {bb['arm']} at lr {bb['lr']:.4g}, validation {bb['mean_val_accuracy']:.4f}"
        )
        c = tuned.get("comparison")
        if c and tuned.get("chosen"):
            line += (
                f"; chosen loss at its re-tuned lr {tuned['chosen']['lr']:.4g}: {c['mean_a']:.4f} "
                f"(wins {c['wins']}/{c['pairs']}, Welch p = {c['p']:.3g})"
            )
        lines.append(line)
    else:
        lines.append(
            "baselines not tuned yet: `python -m taylorglo.search baselines DIR` tunes cross-entropy and "
            "label smoothing as hard as the found loss"
        )
    return lines
