"""Reading an experiment directory: status, the generations table, the best loss, plots, one-shot
evaluations over seeds (the original's one-shot runs) and Welch's t-test between two sets of them.

Every command of ``python -m taylorglo.search`` that reads an experiment has its work here, as a
function that returns data or text lines (``status_lines``, ``analyze``, ``comparison_lines``,
``baseline_lines``, ``ttest_lines``, ``invocation``); the CLI parses arguments and prints them.
All files are read through ``ExperimentDir``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from taylorglo.search.config import ExperimentConfig
from taylorglo.search.journal import MEASURED, ExperimentDir, atomic_write
from taylorglo.search.runner import (
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
    "analyze",
    "baseline_lines",
    "best_record",
    "comparison_lines",
    "evaluate_losses",
    "experiment_status",
    "formula_of",
    "generation_table",
    "integrity_lines",
    "invocation",
    "plot_experiment",
    "status_lines",
    "ttest_lines",
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


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_csv(path, rows: list[dict]) -> None:
    """Write ``rows`` as CSV to ``path`` (atomically); an experiment's tables go through ``ExperimentDir``."""
    atomic_write(path, csv_text(rows))


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
        path = exp.artifact_path("fitness.png")
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
        path = exp.artifact_path("best_loss.png")
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
    results: dict[str, list[dict]] = {}
    todo = []
    for name, spec in losses.items():
        cached = {}
        for rec in exp.read_evaluation_set(name, spec):
            cached[rec["seed"]] = rec
        results[name] = [cached[s] for s in seeds if s in cached]
        todo += [(name, spec, s) for s in seeds if s not in cached]
        if log is not None and results[name]:
            log(
                f"  {name}: {len(results[name])} of {len(seeds)} seeds already trained "
                f"({exp.evaluation_path(name)}); reused"
            )
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
                exp.append_evaluation_set(name, rec)
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


# ----------------------------------------------------------------------------------------------
# The commands' work, as text lines (``python -m taylorglo.search`` prints them)


def integrity_lines(st: dict) -> list[str]:
    """The ``integrity`` of ``experiment_status`` as text: one summary line, then one per problem."""
    files = st["integrity"]["files"]
    missing, final_missing = st["integrity"]["missing"], st["integrity"]["final_missing"]
    counts = ", ".join(f"{name} {f['records']}" for name, f in files.items() if f["records"] or f["corrupt"])
    corrupt = sum(len(f["corrupt"]) for f in files.values())
    quarantined = sum(f["quarantined"] for f in files.values())
    unchecked = sum(f["unchecked"] for f in files.values())
    lines = [
        f"integrity: records OK: {counts or 'none yet'}; corrupt lines: {corrupt}; quarantined: "
        f"{quarantined}; missing: {len(missing) + len(final_missing)}"
        + (f" ({unchecked} older records without a checksum)" if unchecked else "")
    ]
    for name, f in files.items():
        for bad in f["corrupt"]:
            why = bad["reason"]
            if st["running"] and why.startswith("torn"):
                why += ", or an append in progress"
            lines.append(f"- {name} line {bad['line']}: {why}; `run` quarantines it")
        if f["quarantined"]:
            lines.append(
                f"- {name}: {f['quarantined']} lines quarantined so far ({Path(name).stem}.quarantine.jsonl)"
            )
    if missing:
        shown = ", ".join(f"g{g} c{i} s{r}" for g, i, r in missing[:8]) + (" ..." if len(missing) > 8 else "")
        lines.append(
            f"- evaluations of told generations without a record: {len(missing)} ({shown}); "
            "`run` evaluates them again"
        )
    if final_missing:
        shown = ", ".join(f"{c} s{r}" for c, r in final_missing[:8]) + (
            " ..." if len(final_missing) > 8 else ""
        )
        lines.append(
            f"- final-selection trainings without a record in final.jsonl: {len(final_missing)} "
            f"({shown}); `run` trains them again"
        )
    return lines


def status_lines(directory, failures: int = 10) -> tuple[list[str], bool]:
    """(the text of ``status DIR``, whether the experiment is complete).

    ``failures``: how many of the last failed trainings to show, each with its log's last lines.
    """
    st = experiment_status(directory)
    lines = []
    state = "complete" if st["complete"] else "not complete"
    lines.append(
        f"{st['directory']}: {state}; {st['generations_done']}/{st['generation_limit']} generations done"
    )
    if st["open_generation"] is not None:
        lines.append(
            f"open generation {st['open_generation']}: {st['open_generation_evaluated']}/"
            f"{st['population_size'] * st['seeds_per_candidate']} trainings evaluated"
        )
    lines.append(f"evaluations: {st['evaluations']}, failed or penalized: {st['failures']}")
    lines += integrity_lines(st)
    if st["running"]:
        lines.append(f"running: {st['running']}")
    if st["best"] is not None:
        b = st["best"]
        lines.append(
            f"best fitness {b['fitness']:.4f} (generation {b['generation']}, candidate {b['index']})"
        )
    sel = st["selection"]
    if sel and sel.get("chosen"):
        c = sel["chosen"]
        lines.append(
            f"final selection: chose {c['id']} (mean validation accuracy {c['mean_val_accuracy']:.4f} "
            f"on {len(sel['seeds'])} fresh seeds)"
        )
    elif sel:
        lines.append(
            f"final selection: in progress ({len(sel['contenders'])} contenders x {len(sel['seeds'])} seeds)"
        )
    tuned = st["baselines"]
    if tuned and tuned.get("best_baseline"):
        bb = tuned["best_baseline"]
        lines.append(
            f"best tuned baseline: {bb['arm']} at lr {bb['lr']:.4g}, validation {bb['mean_val_accuracy']:.4f}"
        )
    exp = ExperimentDir(directory)
    for rec in st["failed"][-failures:] if failures else []:
        lines.append(
            f"- generation {rec['generation']} candidate {rec['index']}: {rec['status']} {rec.get('error') or ''}"
        )
        for line in exp.log_tail(rec["generation"], rec["index"]):
            lines.append(f"    | {line}")
    return lines, bool(st["complete"])


_ANALYZE_COLUMNS = (
    "generation",
    "trainings",
    "best_fitness",
    "median_fitness",
    "failed_share",
    "collapsed_share",
    "invariant_violations",
    "sigma",
    "scale_min",
    "scale_median",
    "scale_max",
)


def analyze(paths: Sequence, *, top: int = 5, plots: bool = True) -> dict:
    """``analyze``: for each experiment (a directory, or a folder of them) write ``generations.csv``
    (and the plots), and describe it.

    Returns ``{"experiments": [ExperimentDir, ...], "summary": [one row per experiment], "lines":
    [the text]}``; with one experiment the text holds its generations table, the final selection,
    the baselines, the best candidates and the best loss's formula; with several, the summary
    table (also written as ``summary.csv`` when a single folder was given). ValueError when a path
    is not an experiment directory or a folder of them.
    """
    exps: list[ExperimentDir] = []
    for d in paths:
        found = ExperimentDir.find(d)
        if not found and not ExperimentDir(d).path.is_dir():
            raise ValueError(f"{d} is not an experiment directory or a folder of them")
        exps += found
    if not exps:
        raise ValueError("no experiment directories found")
    lines: list[str] = []
    summary = []
    for exp in exps:
        d = exp.path
        cfg = _config(exp)
        rows = generation_table(d)
        exp.write_artifact("generations.csv", csv_text(rows))
        best = best_record(d)
        st = experiment_status(d)
        summary.append(
            {
                "experiment": str(d),
                "generations": st["generations_done"],
                "evaluations": st["evaluations"],
                "failures": st["failures"],
                "best_fitness": best["fitness"] if best else None,
                "best_val_accuracy": best.get("val_accuracy") if best else None,
                "complete": st["complete"],
            }
        )
        if len(exps) > 1:
            continue
        columns = list(_ANALYZE_COLUMNS)
        if cfg.search.learning_rate == "searched":
            columns += ["lr_min", "lr_median", "lr_max"]
        lines.append(table_text(rows, columns))
        lines.append(
            f"(written to {exp.artifact_path('generations.csv')}; sigma after each generation's update; "
            "scale: push at the uniform prediction relative to cross-entropy's)"
        )
        lines += report_lines(d)
        if best is not None:
            ranked = sorted(
                aggregate_candidates(exp.evaluations(), cfg.search.fitness), key=lambda r: r["fitness"]
            )
            lines.append("\nbest candidates:")
            lines.append(
                table_text(
                    [
                        {
                            "generation": r["generation"],
                            "index": r["index"],
                            "fitness": r["fitness"],
                            "seeds": len(r["seeds"]),
                            "val_accuracy": r.get("val_accuracy"),
                            "lr": r.get("lr"),
                        }
                        for r in ranked[:top]
                    ]
                )
            )
            lines.append(f"\nbest vector: [{', '.join(f'{v:.6g}' for v in best['vector'])}]")
            lines.append(f"f(x, y) = {formula_of(best['vector'], cfg.search.order, cfg.search.variables)}")
        if plots:
            written = plot_experiment(d)
            if written:
                lines.append("plots: " + ", ".join(str(p) for p in written))
            else:
                lines.append("plots skipped: matplotlib is not installed (pip install matplotlib)")
    if len(exps) > 1:
        lines.append(table_text(summary))
        if len(paths) == 1 and Path(paths[0]).is_dir():
            write_csv(Path(paths[0]) / "summary.csv", summary)
    return {"experiments": exps, "summary": summary, "lines": lines}


def comparison_lines(out: dict) -> list[str]:
    """The result of ``compare_with_baseline`` as text: per metric, the means and the tests."""
    lines = []
    for metric in ("val_accuracy", "test_accuracy"):
        t = out.get(metric)
        if t is None:
            continue
        lines.append(
            f"{metric}: chosen loss {t['mean_a']:.4f} ± {t['std_a']:.4f}  {out['baseline']} "
            f"{t['mean_b']:.4f} ± {t['std_b']:.4f}  (n = {t['n_a']}, {t['n_b']}; wins {t['wins']}/{t['pairs']})  "
            f"Welch p = {t['p']:.3g}"
            + (f", Mann-Whitney p = {t['mann_whitney_p']:.3g}" if t.get("mann_whitney_p") is not None else "")
        )
    return lines


def baseline_lines(summary: dict) -> list[str]:
    """The summary of ``run_baselines`` (``baselines.json``) as text: the tuning table, the comparison."""
    rows = []
    for arm, t in summary["arms"].items():
        row = {"arm": arm}
        for lr in summary["grid"]:
            cell = t["cells"].get(repr(lr))
            row[f"lr {lr:.3g}"] = cell["mean_val_accuracy"] if cell else None
        row["best lr"] = t["best"]["lr"] if t["best"] else None
        rows.append(row)
    lines = [f"validation accuracy, mean over {len(summary['seeds'])} seeds:", table_text(rows)]
    c = summary.get("comparison")
    if c:
        lines.append(
            f"chosen loss (re-tuned lr {summary['chosen']['lr']:.4g}) {c['mean_a']:.4f} vs best tuned baseline "
            f"{c['b']} (lr {summary['best_baseline']['lr']:.4g}) {c['mean_b']:.4f}: wins {c['wins']}/{c['pairs']}, "
            f"Welch p = {c['p']:.3g} (validation)"
        )
    return lines


def read_evaluations(spec) -> list[dict]:
    """One-shot evaluations: an experiment's ``chosen`` set (a directory) or an evaluations file."""
    from taylorglo.search.journal import read_evaluation_file

    p = Path(spec)
    exp = ExperimentDir(p)
    path = exp.evaluation_path("chosen") if p.is_dir() else p
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: no evaluations (run `evaluate` on the experiment first)")
    return exp.read_evaluation_set("chosen") if p.is_dir() else read_evaluation_file(p)


def ttest_lines(a, b=None, metric: str = "test_accuracy") -> list[str]:
    """``ttest``: with one experiment, its chosen loss against its best tuned baseline (``baselines.json``);
    with two evaluation sets (directories or ``.jsonl`` files), Welch's t-test on ``metric``.

    ValueError when ``a`` alone has no tuned baselines.
    """
    if b is None:
        tuned = ExperimentDir(a).read_baselines() if Path(a).is_dir() else None
        if not tuned or not tuned.get("comparison"):
            raise ValueError(
                f"{a} has no tuned baselines to compare with: run `python -m taylorglo.search "
                f"baselines {a}` first, or give two evaluation sets"
            )
        lines = baseline_lines(tuned)[2:]
        c = tuned["comparison"]
        t = "inf" if c["t"] is None else f"{c['t']:.3f}"
        d = "inf" if c["cohens_d"] is None else f"{c['cohens_d']:.3f}"
        return lines + [f"Welch t = {t}, df = {c['df']:.1f}, Cohen's d = {d}"]
    xs = [r[metric] for r in read_evaluations(a) if isinstance(r.get(metric), (int, float))]
    ys = [r[metric] for r in read_evaluations(b) if isinstance(r.get(metric), (int, float))]
    t = welch_ttest(xs, ys)
    return [
        f"{metric}: A {t['mean_a']:.4f} ± {t['std_a']:.4f} (n={t['n_a']})  "
        f"B {t['mean_b']:.4f} ± {t['std_b']:.4f} (n={t['n_b']})",
        f"Welch t = {t['t']:.3f}, df = {t['df']:.1f}, p = {t['p']:.4g}, Cohen's d = {t['cohens_d']:.3f}",
    ]


def invocation(directory, generation: int, index: int) -> str:
    """The standalone ``python -m taylorglo.train`` command of one candidate (ValueError when absent)."""
    import shlex

    from taylorglo.train.losses import LossSpec

    exp = ExperimentDir(directory)
    cfg = _config(exp)
    stored = exp.read_population(generation)
    if stored is None:
        raise ValueError(f"{directory} has no generation {generation}")
    cands = stored[0]["candidates"]
    if not 0 <= index < len(cands):
        raise ValueError(f"generation {generation} has candidates 0..{len(cands) - 1}, not {index}")
    cand = cands[index]
    task = dict(cfg.task, seed=cand["seed"])
    loss = str(LossSpec.taylor(cand["vector"], order=cfg.search.order, variables=tuple(cfg.search.variables)))
    return (
        "python -m taylorglo.train --config-json "
        + shlex.quote(json.dumps(task, sort_keys=True))
        + " --loss "
        + shlex.quote(loss)
    )


def result_lines(result, cfg: Optional[ExperimentConfig] = None) -> list[str]:
    """A ``SearchResult`` as text: where it stopped, the chosen (or best) loss and its formula."""
    if cfg is None:
        cfg = _config(ExperimentDir(result.directory))
    lines = [
        f"{result.directory}: {result.generations} generations, {result.evaluations} evaluations; "
        f"{result.stop_reason}"
    ]
    b = result.chosen or result.best
    if b is not None:
        if result.chosen is not None:
            lines.append(
                f"chosen: {b['id']} (mean validation accuracy {b['mean_val_accuracy']:.4f} on the final "
                "selection's fresh seeds)"
            )
        else:
            lines.append(
                f"best: fitness {b['fitness']:.4f} (val accuracy {_fmt(b.get('val_accuracy'))}) "
                f"generation {b['generation']} candidate {b['index']}"
            )
        lines.append(f"  vector: [{', '.join(f'{v:.6g}' for v in b['vector'])}]")
        if b.get("lr") is not None:
            lines.append(f"  learning rate: {b['lr']:.6g}")
        lines.append(f"  f(x, y) = {formula_of(b['vector'], cfg.search.order, cfg.search.variables)}")
    return lines
