"""Evidence (issue 7): does a searched Taylor loss beat cross-entropy on held-out test data?

    python benchmarks/evidence/run_evidence.py benchmarks/evidence/mnist5k.toml
    python benchmarks/evidence/run_evidence.py benchmarks/evidence/mnist5k.toml --stage report

The protocol, in four stages; each stores its results under ``--out`` and is skipped (or resumed)
when run again, so the command can be interrupted and rerun at any point:

1. ``lr``: cross-entropy is trained at each learning rate of ``[lr_tuning].grid`` on a few seeds;
   the rate with the best mean *validation* accuracy is the tuned one (``lr_tuning.json``). The
   search and every final training use it, so cross-entropy is compared at its own best setting.
2. ``search``: a CMA-ES search (``taylorglo.search.run_search``, resumable) at the tuned rate, all
   candidates of a generation on the same seed, fitness = validation accuracy (``search/``).
3. ``final``: four losses trained once per fresh seed (seeds the search and the tuning never used)
   with the test split measured after the last epoch, its only use: the CMA-ES mean after the last
   generation (``found-mean``), the best single candidate of the search (``found-best``),
   cross-entropy (``cross-entropy``) and cross-entropy with label smoothing (``label-smoothing``).
   Seeds run in batches (all losses per batch), so an interrupted run still has complete batches.
4. ``report``: Welch's t-test of each found loss against each baseline on test accuracy
   (``results.json``, ``results.md``), the fitness curve, the loss shapes and the accuracies as PNGs.
   A hand-written ``notes.md`` in ``--out`` is appended to ``results.md``.

The config (TOML or JSON) has the sections ``task``, ``search``, ``execution`` of a search
experiment (``taylorglo.search.ExperimentConfig``) plus ``lr_tuning`` and ``final``, and optionally
``final_task``: trainer settings that replace the task's in the final runs only (full-length
training after a search with partial training, as at paper scale; stored in ``final/``). ``--set
section.key=value`` overrides any value. One backend (persistent worker processes) serves all
stages.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from taylorglo.search import (
    ExperimentConfig,
    ExperimentDir,
    SearchSpace,
    init_experiment,
    make_backend,
    run_search,
)
from taylorglo.search.analysis import evaluate_losses, generation_table, welch_ttest
from taylorglo.search.config import DEFAULT_EVALUATOR, apply_overrides, read_config_file
from taylorglo.search.journal import Job, atomic_write, is_measured
from taylorglo.search.strategy import CMAStrategy
from taylorglo.train import TrainConfig
from taylorglo.train.data import dataset_info

STAGES = ("lr", "search", "final", "report")
FOUND = ("found-mean", "found-best")
BASELINES = ("cross-entropy", "label-smoothing")
ALPHA = 0.05
DEFAULTS = {
    "lr_tuning": {"grid": [0.02, 0.05, 0.1, 0.2], "seeds": [5001, 5002, 5003]},
    "final": {"seeds": 20, "batch": 10, "seed_base": 10000, "label_smoothing": 0.1},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load(path: str, overrides: Sequence[str]) -> dict:
    """The raw config with overrides and the defaults of the sections this script adds."""
    raw = apply_overrides(read_config_file(path), list(overrides))
    unknown = set(raw) - {"task", "search", "execution", "lr_tuning", "final", "final_task"}
    if unknown:
        raise SystemExit(f"{path}: unknown section(s) {sorted(unknown)}")
    for section, defaults in DEFAULTS.items():
        raw[section] = {**defaults, **raw.get(section, {})}
        extra = set(raw[section]) - set(defaults)
        if extra:
            raise SystemExit(f"{path}: unknown key(s) {sorted(extra)} in [{section}]")
    ExperimentConfig.from_dict({k: raw.get(k, {}) for k in ("task", "search", "execution")})
    if raw.get("final_task"):
        ExperimentConfig.from_dict({"task": {**raw["task"], **raw["final_task"]}})
    return raw


class Backends:
    """Starts the configured backend on first use (a resumed run with nothing to do starts none)."""

    def __init__(self, raw: dict):
        self.execution = ExperimentConfig.from_dict(
            {"task": raw["task"], "execution": raw.get("execution", {})}
        ).execution
        self.backend = None

    def get(self):
        if self.backend is None:
            self.backend = make_backend(self.execution)
        return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.shutdown()
            self.backend = None


# ----------------------------------------------------------------------------------------------
def stage_lr(raw: dict, out: Path, backends: Backends) -> float:
    """Tune cross-entropy's learning rate on the validation split; cached in lr_tuning.jsonl/.json."""
    tuning = raw["lr_tuning"]
    grid = [float(v) for v in tuning["grid"]]
    seeds = [int(s) for s in tuning["seeds"]]
    summary_path = out / "lr_tuning.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary["grid"] == grid and summary["seeds"] == seeds and summary["task"] == _task_key(raw):
            log(f"lr: tuned learning rate {summary['best_lr']} (cached)")
            return float(summary["best_lr"])
    cache_path = out / "lr_tuning.jsonl"
    cached = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("task") == _task_key(raw):
                cached[(rec["lr"], rec["seed"])] = rec
    todo = [(lr, s) for lr in grid for s in seeds if (lr, s) not in cached]
    if todo:
        log(f"lr: {len(todo)} cross-entropy trainings over lr {grid} x seeds {seeds}")
        backend = backends.get()
        futures = []
        for lr, seed in todo:
            task = dict(raw["task"], lr=lr)
            job = Job(
                generation=-1,
                index=0,
                seed=seed,
                task=task,
                evaluator=DEFAULT_EVALUATOR,
                loss="cross-entropy",
                order=raw.get("search", {}).get("order", 3),
            )
            futures.append((lr, seed, backend.submit(job)))
        for lr, seed, fut in futures:
            try:
                res = fut.result()
            except Exception as exc:
                res = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            res.pop("log", None)
            rec = {"lr": lr, "seed": seed, "task": _task_key(raw), **res}
            with open(cache_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
            cached[(lr, seed)] = rec
            log(f"  lr {lr} seed {seed}: {res.get('status')} val {_fmt(res.get('val_accuracy'))}")
    rows = []
    for lr in grid:
        accs = [measured_value(cached[(lr, s)], "val_accuracy") for s in seeds]
        rows.append(
            {
                "lr": lr,
                "val_accuracy": [a if a is not None else 0.0 for a in accs],
                "mean": statistics.fmean(a if a is not None else 0.0 for a in accs),
                "failures": sum(a is None for a in accs),
            }
        )
    best = max(rows, key=lambda r: r["mean"])
    summary = {"grid": grid, "seeds": seeds, "task": _task_key(raw), "rows": rows, "best_lr": best["lr"]}
    atomic_write(summary_path, json.dumps(summary, indent=2) + "\n")
    log(f"lr: tuned learning rate {best['lr']} (mean validation accuracy {best['mean']:.4f})")
    return float(best["lr"])


def _task_key(raw: dict) -> dict:
    """The task without the learning rate: what the tuning results depend on."""
    return {k: v for k, v in raw["task"].items() if k != "lr"}


def measured_value(rec: dict, metric: str) -> float | None:
    v = rec.get(metric)
    if is_measured(rec) and isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


# ----------------------------------------------------------------------------------------------
def experiment_config(raw: dict, lr: float) -> dict:
    return {
        "task": dict(raw["task"], lr=lr),
        "search": copy.deepcopy(raw.get("search", {})),
        "execution": copy.deepcopy(raw.get("execution", {})),
    }


def stage_search(raw: dict, out: Path, lr: float, backends: Backends) -> None:
    directory = out / "search"
    cfg = experiment_config(raw, lr)
    exp = ExperimentDir(directory)
    if exp.exists():
        state = exp.read_state()
        if state is not None and CMAStrategy.loads(state).generation >= cfg["search"].get("generations", 10):
            log("search: complete (cached)")
            return
    log(f"search: CMA-ES in {directory} at lr {lr}")
    result = run_search(directory, cfg, backend=backends.get(), progress=False, log=lambda m: log("  " + m))
    log(f"search: {result.stop_reason}; {result.evaluations} evaluations")


def found_losses(directory: Path) -> dict[str, dict]:
    """The CMA-ES mean after the last completed generation and the best measured candidate."""
    exp = ExperimentDir(directory)
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    s = cfg.search
    strategy = CMAStrategy.loads(exp.read_state())
    space = SearchSpace(s.order, tuple(s.variables), s.space)
    mean = [float(v) for v in space.to_vector(strategy.mean)]
    measured = [r for r in exp.evaluations() if is_measured(r)]
    best = min(measured, key=lambda r: r["fitness"])
    return {
        "found-mean": {"vector": mean},
        "found-best": {"vector": [float(v) for v in best["vector"]]},
        "_meta": {
            "generations": strategy.generation,
            "mean_coords": [float(c) for c in strategy.mean],
            "sigma": strategy.sigma,
            "best": {k: best.get(k) for k in ("generation", "index", "seed", "val_accuracy", "fitness")},
        },
    }


def final_specs(raw: dict, directory: Path) -> dict[str, dict]:
    found = found_losses(directory)
    ls = float(raw["final"]["label_smoothing"])
    return {
        "found-mean": found["found-mean"],
        "found-best": found["found-best"],
        "cross-entropy": {"loss": "cross-entropy"},
        "label-smoothing": {"loss": f"cross-entropy;label_smoothing={ls!r}"},
    }


def final_seeds(raw: dict) -> list[int]:
    f = raw["final"]
    return [int(f["seed_base"]) + i for i in range(int(f["seeds"]))]


def final_dir(raw: dict, out: Path) -> Path:
    """Where the final trainings are stored: the search's experiment, or ``final/`` when
    ``[final_task]`` changes the training of the final runs (e.g. full length after a search with
    partial training, as at paper scale)."""
    if not raw.get("final_task"):
        return out / "search"
    directory = out / "final"
    stored = ExperimentDir(out / "search").read_config()
    cfg = {**stored, "task": {**stored["task"], **raw["final_task"]}}
    init_experiment(directory, cfg)
    return directory


def stage_final(raw: dict, out: Path, backends: Backends) -> None:
    specs = final_specs(raw, out / "search")
    directory = final_dir(raw, out)
    seeds = final_seeds(raw)
    batch = max(1, int(raw["final"]["batch"]))
    for end in range(batch, len(seeds) + batch, batch):
        part = seeds[: min(end, len(seeds))]
        log(f"final: {len(specs)} losses x seeds {part[0]}..{part[-1]} ({len(part)} seeds)")
        evaluate_losses(
            directory,
            specs,
            part,
            evaluate_test=True,
            backend=backends.get() if missing_trainings(directory, specs, part) else None,
            log=lambda m: log(m),
        )


def missing_trainings(directory: Path, specs: dict, seeds: Sequence[int]) -> bool:
    """Whether a loss of ``specs`` lacks a one-shot evaluation on one of ``seeds`` in ``directory``."""
    exp = ExperimentDir(directory)
    for name, spec in specs.items():
        have = {rec["seed"] for rec in exp.read_evaluation_set(name, spec)}
        if set(seeds) - have:
            return True
    return False


def load_final(directory: Path, specs: dict[str, dict], seeds: Sequence[int]) -> dict[str, list[dict]]:
    """The final records of each loss, for the seeds that every loss has finished (paired)."""
    exp = ExperimentDir(directory)
    per = {}
    for name, spec in specs.items():
        recs = {}
        for rec in exp.read_evaluation_set(name, spec):
            if rec["seed"] in seeds:
                recs.setdefault(rec["seed"], rec)
        per[name] = recs
    common = [s for s in seeds if all(s in recs for recs in per.values())]
    return {name: [recs[s] for s in common] for name, recs in per.items()}


# ----------------------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def _paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired t-test on the same seeds (a secondary analysis: the seeds are common to all losses)."""
    diffs = [x - y for x, y in zip(a, b)]
    out = {
        "mean_diff": statistics.fmean(diffs),
        "n": len(diffs),
        "p": None,
        "wins": sum(d > 0 for d in diffs),
    }
    out["ties"] = sum(d == 0 for d in diffs)
    if len(diffs) > 1 and statistics.stdev(diffs) > 0:
        from scipy import stats

        out["p"] = float(stats.ttest_rel(a, b).pvalue)
    return out


def analyze(raw: dict, out: Path) -> dict:
    directory = out / "search"
    lr_summary = json.loads((out / "lr_tuning.json").read_text())
    found = found_losses(directory)
    specs = final_specs(raw, directory)
    results = load_final(final_dir(raw, out), specs, final_seeds(raw))
    cfg = ExperimentConfig.from_dict(ExperimentDir(directory).read_config(), validate_task=False)
    losses = {}
    failures = {}
    for name, recs in results.items():
        row = {"spec": specs[name]}
        for metric in ("test_accuracy", "val_accuracy"):
            vals = [measured_value(r, metric) for r in recs]
            row[metric] = _stats([v if v is not None else 0.0 for v in vals])
        row["seeds"] = [r["seed"] for r in recs]
        row["test_accuracy_per_seed"] = [measured_value(r, "test_accuracy") for r in recs]
        row["statuses"] = {}
        for r in recs:
            row["statuses"][r.get("status")] = row["statuses"].get(r.get("status"), 0) + 1
        row["train_time_mean_s"] = (
            statistics.fmean(r["train_time"] for r in recs if isinstance(r.get("train_time"), (int, float)))
            if recs
            else None
        )
        failures[name] = sum(1 for r in recs if measured_value(r, "test_accuracy") is None)
        losses[name] = row
    comparisons = []
    n = min((len(v) for v in results.values()), default=0)
    for f in FOUND:
        for b in BASELINES:
            for metric in ("test_accuracy", "val_accuracy"):
                a = [measured_value(r, metric) or 0.0 for r in results[f]]
                c = [measured_value(r, metric) or 0.0 for r in results[b]]
                if len(a) < 2:
                    continue
                w = welch_ttest(a, c)
                comparisons.append(
                    {
                        "found": f,
                        "baseline": b,
                        "metric": metric,
                        "diff": w["mean_a"] - w["mean_b"],
                        "welch": w,
                        "paired": _paired(a, c),
                        "significant": bool(w["p"] < ALPHA),
                        "better": bool(w["p"] < ALPHA and w["mean_a"] > w["mean_b"]),
                    }
                )
    gens = generation_table(directory)
    evals = list(ExperimentDir(directory).evaluations())
    search_time = sum(r.get("wall_time") or 0.0 for r in evals)
    exp = ExperimentDir(directory)
    search_wall = sum((exp.read_summary(g["generation"]) or {}).get("wall_time", 0.0) for g in gens)
    trained = [r["train_time"] for r in evals if isinstance(r.get("train_time"), (int, float))]
    return {
        "protocol": {
            "config": raw,
            "tuned_lr": lr_summary["best_lr"],
            "search": cfg.to_dict()["search"],
            "final_seeds_planned": final_seeds(raw),
            "final_seeds_done": results["cross-entropy"] and [r["seed"] for r in results["cross-entropy"]],
            "alpha": ALPHA,
            "test": "Welch's t-test, two-sided, on test accuracy (primary); paired t-test on the "
            "common seeds (secondary)",
            "effect_size": "Cohen's d with the pooled standard deviation sqrt((s_a^2 + s_b^2) / 2)",
        },
        "lr_tuning": lr_summary["rows"],
        "search": {
            "generations": gens,
            "evaluations": len(evals),
            "failures": sum(1 for r in evals if not is_measured(r)),
            "statuses": _count(r["status"] for r in evals),
            "training_time_s_sum": search_time,
            "wall_time_s": search_wall,
            "trainings": len(trained),
            "training_time_s_mean": statistics.fmean(trained) if trained else None,
            "found_mean": {"vector": found["found-mean"]["vector"], **found["_meta"]},
            "found_best": {"vector": found["found-best"]["vector"], **found["_meta"]["best"]},
        },
        "final": losses,
        "final_n": n,
        "failures": failures,
        "comparisons": comparisons,
    }


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _execution_words(execution: dict) -> str:
    backend = execution.get("backend", "local")
    if backend != "local":
        return f"{backend} backend"
    workers = execution.get("workers") or "automatic"
    threads = execution.get("threads_per_worker") or "automatic"
    return f"local backend, {workers} worker processes of {threads} thread(s)"


def _fmt1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def p_text(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2g}" if v >= 1e-3 else f"{v:.1e}"


def markdown(res: dict, plots: Sequence[str], notes: str) -> str:
    p = res["protocol"]
    task = TrainConfig.from_dict(dict(p["config"]["task"], lr=p["tuned_lr"])).to_dict()
    info = dataset_info(task["dataset"])
    test = f"test {info.test_size:,} (a fixed carve)" if info.test_size else "the official test split"
    s = p["search"]
    lines = [
        "# Evidence: searched Taylor loss vs cross-entropy (issue 7)",
        "",
        "Generated by `python benchmarks/evidence/run_evidence.py benchmarks/evidence/mnist5k.toml` "
        "(`--stage report` rewrites this file from the stored results).",
        "",
        "## Protocol",
        "",
        f"- Data: `{task['dataset']}` ({info.source}): {test}, validation "
        f"{task['validation_size'] or info.validation_size} (split seed {task['split_seed']}), "
        f"training {task['train_size'] or 'the rest'} (fraction {task['train_fraction']}).",
        f"- Model `{task['model']}`, {task['optimizer']} momentum {task['momentum']}, "
        f"batch {task['batch_size']}, {task['epochs']} epochs, {task['schedule']} schedule, "
        f"weight decay {task['weight_decay']}, augmentation {task['augment'] if task['augment'] is not None else info.augments}; "
        + (
            "the final runs change: " + str(p["config"]["final_task"])
            if p["config"].get("final_task")
            else "the same training in the search and the final runs"
        )
        + ".",
        f"- Learning rate tuned for cross-entropy on validation (grid {p['config']['lr_tuning']['grid']}, "
        f"seeds {p['config']['lr_tuning']['seeds']}): **{p['tuned_lr']}**, used by every loss.",
        f"- Search: CMA-ES from {s['start']}, sigma {s['sigma']}, population {s['population_size']}, "
        f"{res['search']['found_mean']['generations']} generations, {s['space']} space (order {s['order']}), "
        "one seed per generation, fitness = validation accuracy; "
        f"{res['search']['evaluations']} evaluations ({res['search']['statuses']}).",
        f"- Final: each loss trained on the same {res['final_n']} fresh seeds "
        f"({p['config']['final']['seed_base']}...), test split measured once per loss per seed. "
        f"`found-mean` = CMA-ES mean after the last generation; `found-best` = best single candidate "
        f"(generation {res['search']['found_best']['generation']}, validation "
        f"{_pct(res['search']['found_best']['val_accuracy'])}% on its one search seed).",
        f"- Statistics: {p['test']}; effect size: {p['effect_size']}; alpha {p['alpha']}.",
    ]
    lines += [
        "",
        "## Test accuracy (%)",
        "",
        "| loss | test acc. mean ± std | n | val. acc. mean ± std | failed runs |",
        "|---|---|---|---|---|",
    ]
    for name, row in res["final"].items():
        t, v = row["test_accuracy"], row["val_accuracy"]
        lines.append(
            f"| {name} | {_pct(t['mean'])} ± {_pct(t['std'])} | {t['n']} | "
            f"{_pct(v['mean'])} ± {_pct(v['std'])} | {res['failures'][name]} |"
        )
    lines += [
        "",
        "## Found loss vs baselines (test accuracy)",
        "",
        "| found | baseline | difference (points) | Welch p | Cohen's d | paired p | wins/n |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["comparisons"]:
        if c["metric"] != "test_accuracy":
            continue
        w, pr = c["welch"], c["paired"]
        lines.append(
            f"| {c['found']} | {c['baseline']} | {100 * c['diff']:+.2f} | {p_text(w['p'])} | "
            f"{w['cohens_d']:+.2f} | {p_text(pr['p'])} | {pr['wins']}/{pr['n']} |"
        )
    sr = res["search"]
    final_time = [row["train_time_mean_s"] for row in res["final"].values() if row["train_time_mean_s"]]
    lines += [
        "",
        f"Timings ({_execution_words(p['config'].get('execution', {}))}): search {sr['wall_time_s'] / 60:.1f} min "
        f"wall for {sr['trainings']} trainings ({_fmt1(sr['training_time_s_mean'])} s each in a worker); "
        f"final trainings {_fmt1(statistics.fmean(final_time) if final_time else None)} s each.",
    ]
    lines += ["", "## Verdict", ""]
    for c in res["comparisons"]:
        if c["metric"] != "test_accuracy":
            continue
        if c["better"]:
            word = "significantly better than"
        elif c["significant"]:
            word = "significantly worse than"
        else:
            word = "not significantly different from"
        caveat = ""
        if c["baseline"] == "label-smoothing" and c["significant"] and c["welch"]["n_a"] < 20:
            caveat = " (n < 20: not claimed, the protocol asks for 20 seeds against label smoothing)"
        lines.append(
            f"- `{c['found']}` is {word} `{c['baseline']}` "
            f"(p = {p_text(c['welch']['p'])}, d = {c['welch']['cohens_d']:+.2f}){caveat}."
        )
    lines += [
        "",
        "## Learning-rate tuning (cross-entropy, validation accuracy %)",
        "",
        "| lr | mean | per seed |",
        "|---|---|---|",
    ]
    for r in res["lr_tuning"]:
        lines.append(f"| {r['lr']} | {_pct(r['mean'])} | {', '.join(_pct(a) for a in r['val_accuracy'])} |")
    lines += [
        "",
        "## Search (validation accuracy %, one seed per generation)",
        "",
        "| generation | best | median | failures | invariant violations | sigma |",
        "|---|---|---|---|---|---|",
    ]
    for g in res["search"]["generations"]:
        lines.append(
            f"| {g['generation']} | {_pct(1 - g['best_fitness'])} | {_pct(1 - g['median_fitness'])} | "
            f"{g['failures']} | {g['invariant_violations']} | {g['sigma']:.3g} |"
        )
    fm, fb = res["search"]["found_mean"], res["search"]["found_best"]
    lines += [
        "",
        "## The found losses (original TaylorGLO layout, order 3)",
        "",
        f"- `found-mean`: `{[round(v, 6) for v in fm['vector']]}`",
        f"- `found-best`: `{[round(v, 6) for v in fb['vector']]}`",
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(q).stem}]({Path(q).name})" for q in plots] + [""]
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def plot(res: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return []
    from taylorglo.polynomial import TaylorPolynomial

    paths = []
    gens = res["search"]["generations"]
    ce_val = max(r["mean"] for r in res["lr_tuning"])
    fig, ax = plt.subplots(figsize=(6, 4))
    g = [r["generation"] for r in gens]
    ax.plot(g, [100 * (1 - r["best_fitness"]) for r in gens], "o-", label="best candidate")
    ax.plot(g, [100 * (1 - r["median_fitness"]) for r in gens], "s--", label="median candidate")
    ax.axhline(100 * ce_val, color="C2", ls=":", label="cross-entropy (tuned lr, mean of tuning seeds)")
    ax.set_xlabel("generation")
    ax.set_ylabel("validation accuracy (%)")
    lo = min(100 * (1 - r["median_fitness"]) for r in gens)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "fitness.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "fitness.png"))

    # the loss and the push on the true logit for a row whose other classes share 1 - p equally
    n = 10
    ps = np.linspace(0.01, 0.999, 300)
    ls = float(res["protocol"]["config"]["final"]["label_smoothing"])
    curves = {}
    for name in FOUND:
        poly = TaylorPolynomial(res["final"][name]["spec"]["vector"], 3, ("x", "y"))
        loss = np.array([-(poly(1.0, p) + (n - 1) * poly(0.0, (1 - p) / (n - 1))) for p in ps])
        push = np.array(
            [
                p * (1 - p) * (poly.derivative_y(1.0, p) - poly.derivative_y(0.0, (1 - p) / (n - 1)))
                for p in ps
            ]
        )
        curves[name] = (loss, push)
    curves["cross-entropy"] = (-np.log(ps), 1 - ps)
    eps = ls
    lsl = -(1 - eps + eps / n) * np.log(ps) - (n - 1) * (eps / n) * np.log((1 - ps) / (n - 1))
    curves["label-smoothing"] = (lsl, (1 - eps + eps / n) - ps)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, (loss, push)) in enumerate(curves.items()):
        # losses differ in scale by 10x and more: each is rescaled to [0, 1] to compare shapes
        axes[0].plot(ps, (loss - loss.min()) / (loss.max() - loss.min()), color=f"C{i}", label=name)
        axes[1].plot(ps, push, color=f"C{i}", label=name)
    axes[0].set_ylabel("row loss, each rescaled to [0, 1]")
    axes[1].set_ylabel("-dL/dz_true (push on the true logit)")
    axes[1].axhline(0, color="k", lw=0.5)
    for ax in axes:
        ax.set_xlabel("predicted probability of the true class (others equal)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_shape.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "loss_shape.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(res["final"])
    for i, name in enumerate(names):
        vals = [100 * (v or 0.0) for v in res["final"][name]["test_accuracy_per_seed"]]
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=12, color=f"C{i}")
        if vals:
            ax.errorbar(
                i + 0.3, np.mean(vals), yerr=np.std(vals, ddof=1) if len(vals) > 1 else 0, fmt="o", color="k"
            )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "test_accuracy.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "test_accuracy.png"))
    return paths


def stage_report(raw: dict, out: Path) -> dict:
    res = analyze(raw, out)
    plots = plot(res, out)
    res["plots"] = [Path(q).name for q in plots]
    notes_path = out / "notes.md"
    notes = notes_path.read_text() if notes_path.exists() else ""
    atomic_write(out / "results.json", json.dumps(res, indent=2, default=str) + "\n")
    atomic_write(out / "results.md", markdown(res, plots, notes))
    log(f"report: {out / 'results.md'}")
    for c in res["comparisons"]:
        if c["metric"] == "test_accuracy":
            log(
                f"  {c['found']} vs {c['baseline']}: {100 * c['diff']:+.2f} points, "
                f"p {p_text(c['welch']['p'])}, d {c['welch']['cohens_d']:+.2f}"
            )
    return res


# ----------------------------------------------------------------------------------------------
def run(
    config: str, out: str | Path, *, overrides: Sequence[str] = (), stages: Sequence[str] = STAGES
) -> dict | None:
    """Run (or resume) the given stages; returns the report dict when ``report`` ran."""
    raw = load(config, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backends = Backends(raw)
    t0 = time.perf_counter()
    res = None
    try:
        lr = stage_lr(raw, out, backends) if "lr" in stages or "search" in stages else None
        if "search" in stages:
            stage_search(raw, out, lr, backends)
        if "final" in stages:
            stage_final(raw, out, backends)
    finally:
        backends.close()
    if "report" in stages:
        res = stage_report(raw, out)
    log(f"done in {time.perf_counter() - t0:.0f}s")
    return res


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "config", help="the protocol config (TOML or JSON), e.g. benchmarks/evidence/mnist5k.toml"
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="output directory (default: results/)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override")
    parser.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable)")
    args = parser.parse_args(argv)
    run(args.config, args.out, overrides=args.set, stages=args.stage or STAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
