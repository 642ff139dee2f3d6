"""Export a search's found loss as a pip-installable preset package (``python -m taylorglo.search export``).

    path = export_experiment("runs/exp1", "cifar10-allcnnc")     # the search's chosen/best candidate
    preset = preset_from_experiment("runs/exp1", "my-loss", candidate="mean")

:func:`preset_from_experiment` takes the loss the search settled on (the final selection's choice,
else the best measured candidate of the journal) or the final CMA-ES mean, the config (dataset,
model, training budget, search config), the generations and evaluations done, and the one-shot
evaluations of that vector and of cross-entropy on the same seeds (``DIR/evaluations/*.jsonl``,
written by ``python -m taylorglo.search evaluate``) for the results table. What the experiment does
not record is left null, never estimated. The package itself is written by
:func:`taylorglo.presets.export.export_package`: presets are data and never read an experiment;
the search, which writes experiments, turns one into a preset.
"""

from __future__ import annotations

import datetime
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from taylorglo.presets.export import check_name, export_package, preset_from_vector
from taylorglo.presets.preset import Preset
from taylorglo.search.config import NUM_CLASSES, ExperimentConfig
from taylorglo.search.journal import ExperimentDir, is_measured
from taylorglo.search.runner import chosen_candidate
from taylorglo.search.stats import welch_ttest
from taylorglo.search.strategy import CMAStrategy

__all__ = ["export_experiment", "preset_from_experiment"]

PathLike = Union[str, Path]
_BUDGET_KEYS = (
    "dataset",
    "model",
    "epochs",
    "max_steps",
    "batch_size",
    "train_fraction",
    "train_size",
    "validation_size",
    "optimizer",
    "lr",
    "schedule",
    "weight_decay",
)


def _stats(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def _measured_results(exp: ExperimentDir, vector: Sequence[float]) -> Optional[dict]:
    """Results of the one-shot evaluations of ``vector`` and cross-entropy on the same seeds, or None."""
    want = [float(v) for v in vector]
    mine: dict[str, dict[int, dict]] = {}
    ce: dict[int, dict] = {}
    for name in exp.evaluation_names():
        for rec in exp.read_evaluation_set(name):
            spec = rec.get("spec") or {}
            if not is_measured(rec) or not isinstance(rec.get("seed"), int):
                continue
            if spec.get("vector") is not None and [float(v) for v in spec["vector"]] == want:
                mine.setdefault(f"{name}.jsonl", {}).setdefault(rec["seed"], rec)
            elif spec.get("loss") in ("cross-entropy", "ce") and "vector" not in spec:
                ce.setdefault(rec["seed"], rec)
    if not mine:
        return None
    file, runs = max(mine.items(), key=lambda kv: len(kv[1]))
    for metric in ("test_accuracy", "val_accuracy"):
        seeds = sorted(s for s, r in runs.items() if _finite(r.get(metric)))
        if seeds:
            break
    else:
        return None
    a = [float(runs[s][metric]) for s in seeds]
    ce_seeds = [s for s in seeds if s in ce and _finite(ce[s].get(metric))]
    b = [float(ce[s][metric]) for s in ce_seeds]
    out: dict[str, Any] = {
        "metric": metric,
        "protocol": {
            "description": "one-shot trainings with the experiment's task config, one per seed; "
            "cross-entropy on the same seeds (paired)",
            "seeds": seeds,
            "cross_entropy_seeds": ce_seeds,
            "evaluations_file": f"evaluations/{file}",
        },
        "preset": _stats(a),
        "cross_entropy": _stats(b) if b else None,
        "p_value": None,
        "test": None,
    }
    if len(a) > 1 and len(b) > 1:
        p = welch_ttest(a, b)["p"]
        if math.isfinite(p):
            out["p_value"] = min(max(float(p), 0.0), 1.0)
            out["test"] = "welch (two-sided)"
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def preset_from_experiment(
    directory: PathLike,
    name: str,
    *,
    candidate: str = "best",
    description: Optional[str] = None,
    num_classes: Optional[int] = None,
) -> Preset:
    """A preset from a search experiment directory.

    Args:
        directory: the experiment (``config.json``, ``journal.jsonl``, ``state.pkl``).
        name: the preset name.
        candidate: ``"best"`` (the loss the search settled on: the final selection's choice, else
            the measured candidate with the lowest fitness) or ``"mean"`` (the CMA-ES mean after
            the last completed generation, mapped to the original layout).
        description: one line; a default names the experiment and the selection.
        num_classes: for the invariant; from the search config or the dataset when omitted.
    """
    check_name(name)
    if candidate not in ("best", "mean"):
        raise ValueError(f"candidate must be 'best' or 'mean', got {candidate!r}")
    exp = ExperimentDir(directory)
    if not exp.exists():
        raise FileNotFoundError(f"{directory} is not an experiment directory (no config.json)")
    raw = exp.read_config()
    cfg = ExperimentConfig.from_dict(raw, validate_task=False)
    s = cfg.search
    records = list(exp.evaluations())
    state = exp.read_state()
    generations = 0
    strategy = None
    if state is not None:
        strategy = CMAStrategy.loads(state)
        generations = strategy.generation

    lr = None
    if candidate == "best":
        best = chosen_candidate(exp, s.fitness)
        if best is None or (best.get("selection") == "search" and best.get("val_accuracy") is None):
            raise ValueError(
                f"{directory} has no measured candidate yet ({len(records)} evaluations recorded)"
            )
        vector = [float(v) for v in best["vector"]]
        lr = best.get("lr")
        if best["selection"] == "final":
            picked = {
                "selection": "the final selection's choice: best mean validation accuracy on fresh seeds "
                "among the search's top candidates and the CMA-ES mean (selection.json)",
                "id": best.get("id"),
                "generation": best.get("generation"),
                "index": best.get("index"),
                "val_accuracy": best.get("mean_val_accuracy"),
                "lr": lr,
            }
        else:
            picked = {
                "selection": "best candidate of the journal (lowest fitness = 1 - val_accuracy, "
                f"aggregated over its seeds by {s.fitness})",
                "generation": best.get("generation"),
                "index": best.get("index"),
                "fitness": best.get("fitness"),
                "val_accuracy": best.get("val_accuracy"),
                "status": best.get("statuses", ["ok"])[0],
                "seed": best.get("seeds", [None])[0],
                "lr": lr,
            }
    else:
        if strategy is None:
            raise ValueError(
                f"{directory} has no completed generation (no state.pkl): there is no CMA-ES mean yet"
            )

        space = cfg.search_space()
        vector, lr = space.decode(strategy.mean)
        picked = {
            "selection": "CMA-ES mean after the last completed generation",
            "generation": generations,
            "sigma": strategy.sigma,
            "space": s.space,
            "coords": [float(c) for c in strategy.mean],
            "lr": lr,
        }

    task = dict(cfg.task)
    try:
        from taylorglo.train.config import TrainConfig  # lazily: taylorglo.train imports timm

        effective = TrainConfig.from_dict(task).to_dict()
    except Exception:
        effective = task
    budget = {k: effective[k] for k in _BUDGET_KEYS if k in effective and k not in ("dataset", "model")}
    if lr is not None:  # a searched learning rate belongs to the loss: record it with the budget
        budget["lr"] = float(lr)
    finished = [r["finished_at"] for r in records if _finite(r.get("finished_at"))]
    date = None
    if finished:
        date = datetime.datetime.fromtimestamp(max(finished), datetime.timezone.utc).date().isoformat()
    results = _measured_results(exp, vector)
    unknown = []
    if results is None:
        unknown.append(
            "measured results: no one-shot evaluations of this vector in the experiment "
            "(run `python -m taylorglo.search evaluate DIR` before exporting the best candidate)"
        )
    elif results["cross_entropy"] is None:
        unknown.append("cross-entropy under the same protocol: not evaluated")
    unknown.append("the package versions of the search itself (not recorded in the journal)")
    provenance = {
        "kind": "search",
        "dataset": effective.get("dataset"),
        "model": effective.get("model"),
        "training_budget": budget,
        "search_config": {"search": cfg.to_dict()["search"], "task": raw.get("task", {})},
        "generations": generations,
        "evaluations": len(records),
        "experiment": exp.path.resolve().name,
        "candidate": picked,
        "known": [],
        "unknown": unknown,
    }
    if num_classes is None:
        num_classes = s.num_classes or NUM_CLASSES.get(str(effective.get("dataset", "")).lower(), 10)
    if description is None:
        what = "best candidate" if candidate == "best" else "CMA-ES mean"
        description = (
            f"TaylorGLO loss found by a CMA-ES search ({what}) on {effective.get('dataset')} "
            f"with {effective.get('model')}"
        )
    return preset_from_vector(
        vector,
        name,
        order=s.order,
        variables=tuple(s.variables),
        description=description,
        provenance=provenance,
        results=results,
        num_classes=int(num_classes),
        date=date,
        tags=["search"],
        notes=["versions are those of the environment that exported the preset"],
    )


def export_experiment(
    directory: PathLike,
    name: str,
    out: Optional[PathLike] = None,
    *,
    candidate: str = "best",
    description: Optional[str] = None,
    **options: Any,
) -> Path:
    """Write the experiment's loss as a preset package (``export_package`` options); returns the folder."""
    preset: Preset = preset_from_experiment(directory, name, candidate=candidate, description=description)
    return export_package(preset, out, **options)
