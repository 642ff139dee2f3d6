"""Evidence, protocol v2 (issue 12): a found loss against the best tuned baseline, test split read once.

    python benchmarks/evidence/protocol_v2.py benchmarks/evidence/v2/mnist1d.toml --out runs/v2-mnist1d
    python benchmarks/evidence/protocol_v2.py CONFIG --out DIR --stage report   # rewrite the report

Every stage stores what it trains under ``--out`` as it goes (fsynced journals), so the command can
be killed and rerun at any point and continues where it stopped; a finished stage trains nothing.

1. ``tune`` (validation only): every member of every baseline family (``[protocol.baselines]``:
   e.g. cross-entropy, label smoothing at several epsilons, GCE at several q, SCE, MAE, Taylor
   cross-entropy; by default cross-entropy and label smoothing at each epsilon of
   ``[protocol].label_smoothing``) at every learning rate of ``[protocol].lrs`` on
   ``tuning_seeds`` fresh seeds (``tuning/``, ``taylorglo.search.tune_arms``).
2. ``search`` (validation only): one CMA-ES search per ``[[variants]]`` entry (``search-NAME/``):
   the ``[search]`` settings (normalized space, searched learning rate within the grid's range,
   seeds per candidate, final selection of the top candidates and the CMA-ES mean on fresh
   validation seeds) with the variant's own keys (e.g. its variables). A variant's
   ``start = "best-baseline"`` starts its search from the Taylor expansion of the best tuned
   baseline's member (``search.start = "loss:SPEC"``), read from stage 1.
3. ``retune`` (validation only): each variant's chosen loss on the same grid and tuning seeds as the
   baselines, so every arm gets the same tuning; its best learning rate is used from here on.
4. ``final``: every arm (each found variant and each baseline family at its best member and
   learning rate) trained once per seed on ``final_seeds`` fresh seeds, and the test split evaluated
   after the last epoch: the only place the test split is read (``final/evaluations``).
5. ``report``: ``results.json`` and ``results.md`` (each arm's test and validation accuracy, mean ±
   std and n; against the best tuned baseline, the better of cross-entropy and label smoothing by
   validation: Welch's t-test (primary, two-sided), Mann-Whitney U, Cohen's d, wins/n over paired
   seeds), the tuning table, sigma per generation, and the plots (fitness and sigma, loss shapes,
   test accuracies). A hand-written ``notes.md`` in ``--out`` is appended to ``results.md``.

The config holds ``task`` and ``execution`` (as a search experiment), ``search`` (shared by the
variants), ``[[variants]]`` (``name`` plus search keys) and ``protocol`` (``lrs``,
``baselines`` or ``label_smoothing``, ``tuning_seeds``, ``final_seeds``, ``seed``). With
``task.label_noise`` the training labels (and the validation labels unless
``task.clean_validation``) are noisy in every stage; the test split is always clean. Seeds of each stage come from
their own stream (``seed``, stage) and are checked disjoint from each other.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from taylorglo.polynomial import TaylorPolynomial  # noqa: E402
from taylorglo.search import (  # noqa: E402
    ExperimentConfig,
    ExperimentDir,
    chosen_candidate,
    compare_arms,
    init_experiment,
    make_backend,
    run_search,
    tune_arms,
)
from taylorglo.search.analysis import evaluate_losses, generation_table  # noqa: E402
from taylorglo.search.config import apply_overrides, read_config_file  # noqa: E402
from taylorglo.train import LossSpec  # noqa: E402

STAGES = ("tune", "search", "retune", "final", "report")
STREAMS = {"tuning": 7001, "final": 7002}
# A variant's ``start = "best-baseline"``: start from the expansion of the best tuned baseline.
BEST_BASELINE = "best-baseline"


def log(msg: str) -> None:
    print(msg, flush=True)


# --- config and seeds ---------------------------------------------------------------------------
def load(path: str, overrides: Sequence[str] = ()) -> dict:
    raw = apply_overrides(read_config_file(path), list(overrides))
    for key in ("task", "search", "protocol", "variants"):
        if key not in raw:
            raise SystemExit(f"{path}: missing [{key}]")
    p = raw["protocol"]
    for key in ("lrs", "tuning_seeds", "final_seeds"):
        if key not in p:
            raise SystemExit(f"{path}: missing protocol.{key}")
    if "baselines" not in p and "label_smoothing" not in p:
        raise SystemExit(f"{path}: give protocol.baselines (or protocol.label_smoothing)")
    names = [v["name"] for v in raw["variants"]]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: variant names must be unique, got {names}")
    try:
        baseline_families(raw)
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    return raw


def stream_seeds(seed: int, stream: str, n: int) -> list[int]:
    tag = STREAMS[stream]
    return [
        int(np.random.SeedSequence([seed % 2**32, tag, i]).generate_state(1)[0] % 2**31) for i in range(n)
    ]


def seeds_of(raw: dict) -> dict[str, list[int]]:
    p = raw["protocol"]
    seed = int(p.get("seed", 0))
    out = {
        "tuning": stream_seeds(seed, "tuning", int(p["tuning_seeds"])),
        "final": stream_seeds(seed, "final", int(p["final_seeds"])),
    }
    if set(out["tuning"]) & set(out["final"]):
        raise SystemExit("tuning and final seeds collide: change protocol.seed")
    return out


def _container(raw: dict, directory: Path) -> Path:
    """An experiment directory that holds the task (for tune_arms/evaluate_losses), no search."""
    cfg = {
        "task": raw["task"],
        "search": {"final_top_k": 0, "invariant_action": "off", "generations": 1},
        "execution": raw.get("execution", {}),
    }
    init_experiment(directory, ExperimentConfig.from_dict(cfg))
    return directory


def variant_config(raw: dict, variant: dict, out: Path | None = None) -> dict:
    """A variant's search experiment config: ``[search]`` with the variant's keys.

    ``start = "best-baseline"`` becomes ``"loss:SPEC"``, the best tuned baseline's member (read from
    the finished tuning stage under ``out``): the search starts from the Taylor expansion of the loss
    it has to beat, at ``search.start_lr`` (default ``task.lr``), not at the member's tuned learning
    rate: the expansion is not the loss, and at 20 % symmetric noise GCE's order-3 expansion was
    unstable at GCE's tuned rate (measured, see benchmarks/evidence/noisy/README.md). Without ``out``
    (a config check before any tuning) it reads ``"cross-entropy"``.
    """
    search = dict(copy.deepcopy(raw["search"]))
    search.update({k: v for k, v in variant.items() if k != "name"})
    if search.get("start") == BEST_BASELINE:
        search["start"] = "cross-entropy" if out is None else "loss:" + best_baseline_spec(raw, out)
    return {"task": raw["task"], "search": search, "execution": raw.get("execution", {})}


def best_baseline_spec(raw: dict, out: Path) -> str:
    """The loss spec of the best tuned baseline's best member (validation only; trains nothing)."""
    lrs = [float(v) for v in raw["protocol"]["lrs"]]
    table = tune_arms(
        out / "tuning", baseline_arms(raw), lrs, seeds_of(raw)["tuning"], backend=_NoTraining(), log=None
    )
    member = family_choice(raw, table)[best_baseline(raw, table)]
    return table[member]["spec"]["loss"]


def found_spec(directory: Path) -> tuple[str, dict]:
    """The chosen loss of a variant's search as a trainer loss spec, and the chosen record."""
    exp = ExperimentDir(directory)
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    chosen = chosen_candidate(exp, cfg.search.fitness)
    if chosen is None:
        raise SystemExit(f"{directory}: the search has no result yet")
    spec = LossSpec.taylor(
        list(chosen["vector"]), order=cfg.search.order, variables=tuple(cfg.search.variables)
    )
    return str(spec), chosen


def baseline_families(raw: dict) -> dict[str, dict[str, str]]:
    """family -> {tuning arm name: trainer loss spec}: each family's members are tuned on the grid,
    and the final table holds each family at its best member (by validation).

    ``protocol.baselines`` maps a family to one spec, a list of specs (each member named by its spec)
    or a table {name: spec}. Without it, the families are cross-entropy and label smoothing at each
    epsilon of ``protocol.label_smoothing`` (the arm names of the first v2 runs).
    """
    p = raw["protocol"]
    if "baselines" not in p:
        return {
            "cross-entropy": {"cross-entropy": "cross-entropy"},
            "label-smoothing": {
                f"label-smoothing-{eps:g}": f"cross-entropy;label_smoothing={float(eps)!r}"
                for eps in p["label_smoothing"]
            },
        }
    if not isinstance(p["baselines"], dict) or not p["baselines"]:
        raise ValueError(
            "protocol.baselines must be a non-empty table: family = spec, [specs] or {name = spec}"
        )
    families: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for family, members in p["baselines"].items():
        if isinstance(members, str):
            members = {family: members}
        elif isinstance(members, list):
            members = {family: members[0]} if len(members) == 1 else {m: m for m in members}
        if not isinstance(members, dict) or not members:
            raise ValueError(f"protocol.baselines.{family}: expected a spec, a list of specs or a table")
        for name, spec in members.items():
            if not isinstance(spec, str):
                raise ValueError(f"protocol.baselines.{family}.{name}: a loss spec is a string, got {spec!r}")
            try:
                LossSpec.parse(spec)
            except ValueError as exc:
                raise ValueError(f"protocol.baselines.{family}: {exc}") from None
            if name in seen or name.startswith("found-") or family.startswith("found-"):
                raise ValueError(
                    f"protocol.baselines: arm name {name!r} is used twice or starts with 'found-'"
                )
            seen.add(name)
        families[family] = dict(members)
    return families


def baseline_arms(raw: dict) -> dict[str, dict]:
    return {
        name: {"loss": spec} for members in baseline_families(raw).values() for name, spec in members.items()
    }


# --- stages -------------------------------------------------------------------------------------
def stage_tune(raw: dict, out: Path, backend) -> dict:
    lrs = [float(v) for v in raw["protocol"]["lrs"]]
    return tune_arms(
        _container(raw, out / "tuning"),
        baseline_arms(raw),
        lrs,
        seeds_of(raw)["tuning"],
        backend=backend,
        log=log,
    )


def stage_search(raw: dict, out: Path, backend) -> None:
    for variant in raw["variants"]:
        directory = out / f"search-{variant['name']}"
        log(f"search {variant['name']} in {directory}")
        cfg = variant_config(raw, variant, out)
        if variant.get("start") == BEST_BASELINE:
            log(f"search {variant['name']} starts from the best tuned baseline: {cfg['search']['start']}")
        result = run_search(directory, cfg, backend=backend, progress=False, log=log)
        log(f"search {variant['name']}: {result.stop_reason}; {result.evaluations} evaluations")


def stage_retune(raw: dict, out: Path, backend) -> dict:
    arms = {}
    for variant in raw["variants"]:
        spec, _ = found_spec(out / f"search-{variant['name']}")
        arms[f"found-{variant['name']}"] = {"loss": spec}
    lrs = [float(v) for v in raw["protocol"]["lrs"]]
    return tune_arms(
        _container(raw, out / "tuning"), arms, lrs, seeds_of(raw)["tuning"], backend=backend, log=log
    )


def tuned_table(raw: dict, out: Path) -> dict[str, dict]:
    """Every arm's tuning row (read back from the tuning journal; trains nothing when complete)."""
    arms = baseline_arms(raw)
    for variant in raw["variants"]:
        arms[f"found-{variant['name']}"] = {"loss": found_spec(out / f"search-{variant['name']}")[0]}
    lrs = [float(v) for v in raw["protocol"]["lrs"]]
    table = tune_arms(out / "tuning", arms, lrs, seeds_of(raw)["tuning"], backend=_NoTraining(), log=None)
    return table


class _NoTraining:
    """A backend that refuses to train: the report must only read what the stages stored."""

    capacity = 1

    def submit(self, job):
        raise RuntimeError("the report found an untrained cell: run the tune/search/retune stages first")

    def shutdown(self):
        pass


def final_arms(raw: dict, table: dict[str, dict]) -> dict[str, dict]:
    """The arms of the final table at their tuned learning rates (``table``: :func:`tuned_table`)."""
    arms: dict[str, dict] = {}
    for variant in raw["variants"]:
        name = f"found-{variant['name']}"
        arms[name] = dict(table[name]["spec"], lr=table[name]["best"]["lr"])
    for family, member in family_choice(raw, table).items():
        arms[family] = dict(table[member]["spec"], lr=table[member]["best"]["lr"])
    return arms


def _score(table: dict[str, dict], arm: str) -> float:
    """An arm's best mean validation accuracy in the tuning table (-1 when it has none)."""
    best = table[arm]["best"]
    return -1.0 if best is None else best["mean_val_accuracy"]


def family_choice(raw: dict, table: dict[str, dict]) -> dict[str, str]:
    """Each baseline family's best tuning arm by mean validation accuracy (the first on a tie)."""
    return {
        family: max(members, key=lambda arm: _score(table, arm))
        for family, members in baseline_families(raw).items()
    }


def best_baseline(raw: dict, table: dict[str, dict]) -> str:
    """The baseline family whose best member has the best validation accuracy (the first on a tie)."""
    choice = family_choice(raw, table)
    return max(choice, key=lambda family: _score(table, choice[family]))


def stage_final(raw: dict, out: Path, backend) -> dict:
    arms = final_arms(raw, tuned_table(raw, out))
    directory = _container(raw, out / "final")
    return evaluate_losses(
        directory, arms, seeds_of(raw)["final"], evaluate_test=True, backend=backend, log=log
    )


# --- report -------------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def analyze(raw: dict, out: Path) -> dict:
    seeds = seeds_of(raw)
    table = tuned_table(raw, out)
    arms = final_arms(raw, table)
    final = evaluate_losses(
        out / "final", arms, seeds["final"], evaluate_test=True, backend=_NoTraining(), log=None
    )
    baseline = best_baseline(raw, table)
    res: dict = {
        "dataset": raw["task"].get("dataset"),
        "label_noise": raw["task"].get("label_noise"),
        "clean_validation": bool(raw["task"].get("clean_validation", False)),
        "restore_best": bool(raw["task"].get("restore_best", False)),
        "seeds": seeds,
        "best_baseline": baseline,
        "families": family_choice(raw, table),
        "arms": {},
    }
    realized = {
        r["label_noise"]["realized_rate"]
        for recs in final.values()
        for r in recs
        if isinstance(r.get("label_noise"), dict) and "realized_rate" in r["label_noise"]
    }
    res["realized_noise_rate"] = sorted(realized)
    for name, recs in final.items():
        test = [r["test_accuracy"] for r in recs if isinstance(r.get("test_accuracy"), (int, float))]
        val = [r["val_accuracy"] for r in recs if isinstance(r.get("val_accuracy"), (int, float))]
        res["arms"][name] = {
            "spec": arms[name],
            "test": _stats(test),
            "val": _stats(val),
            "failed": sum(1 for r in recs if r.get("status") not in ("ok", "below_threshold")),
            "below_threshold": sum(1 for r in recs if r.get("status") == "below_threshold"),
            "test_accuracies": [r.get("test_accuracy") for r in recs],
        }
    res["comparisons"] = {}
    base_test = res["arms"][baseline]["test_accuracies"]
    for name in arms:
        if name == baseline:
            continue
        a = res["arms"][name]["test_accuracies"]
        pairs = [(x, y) for x, y in zip(a, base_test) if x is not None and y is not None]
        if len(pairs) > 1:
            res["comparisons"][name] = compare_arms([x for x, _ in pairs], [y for _, y in pairs])
    res["tuning"] = {
        arm: {
            "best_lr": t["best"]["lr"],
            "cells": {lr: c["mean_val_accuracy"] for lr, c in t["cells"].items()},
            "best_mean_val_accuracy": t["best"]["mean_val_accuracy"],
        }
        for arm, t in table.items()
    }
    res["searches"] = {}
    for variant in raw["variants"]:
        directory = out / f"search-{variant['name']}"
        rows = generation_table(directory)
        sel = ExperimentDir(directory).read_selection() or {}
        spec, chosen = found_spec(directory)
        res["searches"][variant["name"]] = {
            "config": variant_config(raw, variant, out)["search"],
            "generations": [
                {
                    k: r[k]
                    for k in (
                        "generation",
                        "best_fitness",
                        "median_fitness",
                        "sigma",
                        "collapsed_share",
                        "failed_share",
                        "lr_median",
                        "scale_median",
                    )
                }
                for r in rows
            ],
            "evaluations": sum(r["trainings"] for r in rows),
            "chosen": {"spec": spec, "searched_lr": chosen.get("lr"), "id": chosen.get("id")},
            "selection": sel.get("table"),
        }
    return res


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(raw: dict, res: dict, plots: Sequence[str], notes: str) -> str:
    p = raw["protocol"]
    families = ", ".join(f"{f} ({', '.join(m)})" for f, m in baseline_families(raw).items())
    noise = res.get("label_noise")
    title = res["dataset"]
    if noise:
        title += f", {noise['kind']} label noise {noise['rate']:g}"
        title += " (clean validation)" if res.get("clean_validation") else " (noisy validation)"
    if res.get("restore_best"):
        title += ", every training early-stopped by validation"
    lines = [
        f"# Evidence, protocol v2: {title}",
        "",
        "Generated by `python benchmarks/evidence/protocol_v2.py` (see its docstring for the protocol).",
        "",
        "## Protocol",
        "",
        f"- Task: `{json.dumps(raw['task'], sort_keys=True)}`.",
        f"- Label noise: `{json.dumps(noise, sort_keys=True)}`, realized training rate "
        f"{', '.join(f'{r:.4f}' for r in res.get('realized_noise_rate', [])) or '-'}; validation "
        f"{'clean' if res.get('clean_validation') else 'noisy'}; test clean."
        if noise
        else "- Labels: clean.",
        f"- Tuning (validation only): the baseline families {families} over the learning "
        f"rates {p['lrs']}, {p['tuning_seeds']} seeds each; each found loss re-tuned on the same grid and seeds; "
        "each family enters the final table at its best member and learning rate.",
        f"- Search: `{json.dumps(raw['search'], sort_keys=True)}`; variants "
        + ", ".join(f"`{json.dumps(v, sort_keys=True)}`" for v in raw["variants"])
        + "."
        + "".join(
            f" Variant {v['name']} started from the best tuned baseline's expansion, "
            f"`{res['searches'][v['name']]['config']['start']}`."
            for v in raw["variants"]
            if v.get("start") == BEST_BASELINE
        ),
        f"- Final: each arm at its tuned learning rate on {p['final_seeds']} fresh seeds; the test split is read "
        f"once per arm and seed, here only. Best tuned baseline (by validation): **{res['best_baseline']}**.",
        "- Statistics: Welch's t-test (two-sided, primary), Mann-Whitney U, Cohen's d (pooled sd), wins over "
        "paired seeds; alpha 0.05.",
        "",
        "## Test accuracy (%)",
        "",
        "| arm | learning rate | test mean ± std | n | validation mean ± std | failed | below threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in res["arms"].items():
        t, v = a["test"], a["val"]
        lines.append(
            f"| {name} | {a['spec']['lr']:.3g} | {_pct(t['mean'])} ± {_pct(t['std'])} | {t['n']} | "
            f"{_pct(v['mean'])} ± {_pct(v['std'])} | {a['failed']} | {a['below_threshold']} |"
        )
    lines += [
        "",
        f"## Against the best tuned baseline ({res['best_baseline']}), test accuracy",
        "",
        "| arm | difference (points) | Welch p | Mann-Whitney p | Cohen's d | wins/n |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in res["comparisons"].items():
        mw = "-" if c["mann_whitney_p"] is None else f"{c['mann_whitney_p']:.3g}"
        lines.append(
            f"| {name} | {100 * (c['mean_a'] - c['mean_b']):+.2f} | {c['p']:.3g} | {mw} | {c['cohens_d']:+.2f} | "
            f"{c['wins']}/{c['pairs']} |"
        )
    lines += ["", "## Tuning (validation accuracy %, mean over the tuning seeds)", ""]
    lrs = sorted({float(lr) for t in res["tuning"].values() for lr in t["cells"]})
    lines.append("| arm | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best lr |")
    lines.append("|---" * (len(lrs) + 2) + "|")
    for arm, t in res["tuning"].items():
        cells = {float(k): v for k, v in t["cells"].items()}
        lines.append(f"| {arm} | " + " | ".join(_pct(cells.get(lr)) for lr in lrs) + f" | {t['best_lr']:g} |")
    for name, s in res["searches"].items():
        lines += [
            "",
            f"## Search {name}",
            "",
            f"{s['evaluations']} trainings; chosen `{s['chosen']['spec']}` ({s['chosen']['id']}, searched lr "
            f"{s['chosen']['searched_lr']}).",
            "",
            "| generation | best val. % | median val. % | sigma | median lr | collapsed share |",
            "|---|---|---|---|---|---|",
        ]
        for g in s["generations"]:
            lr = "-" if g["lr_median"] is None else f"{g['lr_median']:.3g}"
            lines.append(
                f"| {g['generation']} | {_pct(1 - g['best_fitness'])} | {_pct(1 - g['median_fitness'])} | "
                f"{g['sigma']:.3g} | {lr} | {g['collapsed_share']:.2f} |"
            )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def plot(raw: dict, res: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return []
    paths = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, s) in enumerate(res["searches"].items()):  # one color per search in both panels
        g = [r["generation"] for r in s["generations"]]
        color = f"C{i % 10}"
        ax1.plot(
            g,
            [100 * (1 - r["best_fitness"]) for r in s["generations"]],
            "o-",
            color=color,
            label=f"{name} best",
        )
        ax1.plot(
            g,
            [100 * (1 - r["median_fitness"]) for r in s["generations"]],
            "--",
            color=color,
            label=f"{name} median",
        )
        ax2.plot(g, [r["sigma"] for r in s["generations"]], "o-", color=color, label=name)
    ax1.set_xlabel("generation")
    ax1.set_ylabel("validation accuracy (%)")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("generation")
    ax2.set_ylabel("CMA-ES sigma (after update)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "search.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "search.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    ps = [0.001 + 0.998 * i / 200 for i in range(201)]
    for i, (name, s) in enumerate(res["searches"].items()):
        spec = LossSpec.parse(s["chosen"]["spec"])
        poly = TaylorPolynomial(list(spec.params), spec.order, spec.variables)
        for t in [0.0, 1.0] if poly.has_progress else [None]:
            kw = {"t": t} if t is not None else {}
            d = [poly.derivative_y(1.0, p, **kw) - poly.derivative_y(0.0, p, **kw) for p in ps]
            ax.plot(
                ps,
                [p * (1 - p) * v for p, v in zip(ps, d)],
                color=f"C{i % 10}",
                linestyle="-" if t in (None, 0.0) else ":",
                label=f"{name}" + (f" t={t:g}" if kw else ""),
            )
    ax.plot(ps, [1 - p for p in ps], color="k", linestyle="--", label="cross-entropy")
    ax.set_xlabel("predicted probability of the true class p")
    ax.set_ylabel("push on the true logit p (1 - p) D(p)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss_shape.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "loss_shape.png"))
    arms = list(res["arms"])
    cmap = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")  # one color per arm
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(arms) + 1.5), 4))
    for i, a in enumerate(res["arms"].values()):
        vals = [100 * v for v in a["test_accuracies"] if v is not None]
        ax.scatter([i] * len(vals), vals, alpha=0.6, color=cmap(i % cmap.N))
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(out / "test_accuracy.png", dpi=100)
    plt.close(fig)
    paths.append(str(out / "test_accuracy.png"))
    return paths


def stage_report(raw: dict, out: Path) -> dict:
    res = analyze(raw, out)
    (out / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    plots = plot(raw, res, out)
    notes = (out / "notes.md").read_text() if (out / "notes.md").exists() else ""
    (out / "results.md").write_text(markdown(raw, res, plots, notes))
    log(f"wrote {out / 'results.md'}")
    return res


def run(raw: dict, out: Path, stages: Sequence[str] = STAGES) -> dict | None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "protocol.json").write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
    backend = None
    try:
        if any(s in stages for s in ("tune", "search", "retune", "final")):
            backend = make_backend(
                ExperimentConfig.from_dict(variant_config(raw, raw["variants"][0])).execution
            )
        if "tune" in stages:
            stage_tune(raw, out, backend)
        if "search" in stages:
            stage_search(raw, out, backend)
        if "retune" in stages:
            stage_retune(raw, out, backend)
        if "final" in stages:
            stage_final(raw, out, backend)
    finally:
        if backend is not None:
            backend.shutdown()
    return stage_report(raw, out) if "report" in stages else None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", choices=STAGES, action="append", help="run only these stages (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    raw = load(args.config, args.set)
    run(raw, Path(args.out), args.stage or STAGES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
