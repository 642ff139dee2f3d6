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
from taylorglo.search.runner import MEASURED, generation_seed

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
    """The journal record with the lowest fitness (the first of ties)."""
    best = None
    for rec in ExperimentDir(directory).evaluations():
        if best is None or rec["fitness"] < best["fitness"]:
            best = rec
    return best


def experiment_status(directory) -> dict:
    """Where an experiment stands: generations done/open, evaluations, failures, best, completeness."""
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
    best = min(records, key=lambda r: r["fitness"]) if records else None
    return {
        "directory": str(exp.path),
        "generations_done": done,
        "generation_limit": limit,
        "open_generation": open_gen,
        "open_generation_evaluated": len(exp.evaluations_of(open_gen)) if open_gen is not None else 0,
        "population_size": s.population_size,
        "evaluations": len(records),
        "failures": len(failed),
        "failed": failed,
        "best": best,
        "complete": done >= limit and open_gen is None,
        "running": exp.lock_holder(),
    }


def generation_table(directory) -> list[dict]:
    """One row per generation with evaluations: best/mean/median fitness, failures by status, sigma."""
    exp = ExperimentDir(directory)
    pops = {g: exp.read_population(g) for g in exp.generations()}
    by_gen: dict[int, list[dict]] = {}
    for rec in exp.evaluations():
        by_gen.setdefault(rec["generation"], []).append(rec)
    rows = []
    for g in sorted(by_gen):
        recs = by_gen[g]
        fit = [r["fitness"] for r in recs]
        acc = [
            r["val_accuracy"] for r in recs if r["status"] in MEASURED and r.get("val_accuracy") is not None
        ]
        summary = exp.read_summary(g)
        rows.append(
            {
                "generation": g,
                "evaluated": len(recs),
                "best_fitness": min(fit),
                "mean_fitness": statistics.fmean(fit),
                "median_fitness": statistics.median(fit),
                "best_val_accuracy": max(acc) if acc else None,
                "failures": sum(1 for r in recs if r["status"] not in MEASURED),
                "invariant_violations": sum(1 for r in recs if r.get("violates_invariant")),
                "sigma": pops[g][0]["sigma"] if pops.get(g) else None,
                "closed": summary is not None,
            }
        )
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
        losses: name -> {"vector": [...]} (a Taylor loss of the experiment's order) or {"loss": spec}.
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
    if todo:
        own = backend is None
        if own:
            backend = make_backend(cfg.execution, retries=cfg.search.retries)
        try:
            futures = []
            for name, spec, seed in todo:
                job = {
                    "generation": -1,
                    "index": 0,
                    "attempt": 0,
                    "vector": spec.get("vector"),
                    "loss": spec.get("loss"),
                    "order": cfg.search.order,
                    "variables": list(cfg.search.variables),
                    "seed": seed,
                    "task": cfg.task,
                    "evaluator": cfg.execution.evaluator,
                    "options": cfg.execution.evaluator_options,
                    "evaluate_test": evaluate_test,
                }
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


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's t-test of mean(a) != mean(b): t, degrees of freedom, two-sided p, Cohen's d.

    Uses scipy for p when installed (else a normal approximation). Needs n >= 2 on each side.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per side, got {len(a)} and {len(b)}")
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a), statistics.variance(b)
    se2 = va / len(a) + vb / len(b)
    pooled = math.sqrt((va + vb) / 2)
    d = (ma - mb) / pooled if pooled > 0 else (0.0 if ma == mb else math.copysign(math.inf, ma - mb))
    if se2 == 0:
        t = 0.0 if ma == mb else math.copysign(math.inf, ma - mb)
        df = float(len(a) + len(b) - 2)
        p = 1.0 if ma == mb else 0.0
    else:
        t = (ma - mb) / math.sqrt(se2)
        df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
        try:
            from scipy import stats

            p = float(2 * stats.t.sf(abs(t), df))
        except ImportError:
            p = math.erfc(abs(t) / math.sqrt(2))
    return {
        "mean_a": ma,
        "mean_b": mb,
        "std_a": math.sqrt(va),
        "std_b": math.sqrt(vb),
        "n_a": len(a),
        "n_b": len(b),
        "t": t,
        "df": df,
        "p": p,
        "cohens_d": d,
    }
