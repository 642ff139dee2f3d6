"""Investigations for issue 7, on the validation split only (the test split stays reserved for the table).

    python benchmarks/evidence/investigate.py benchmarks/evidence/mnist5k.toml scale
    python benchmarks/evidence/investigate.py benchmarks/evidence/mnist5k.toml data-fraction --sizes 300 3000

Run after ``run_evidence.py`` (they read the found losses from ``--out``/search). Every training
uses the final runs' first ``--seeds`` fresh seeds and reports **validation** accuracy. (The search
selected the loss on this validation split, so validation numbers slightly favour the found loss;
what matters here is how the gap changes between conditions.)

- ``scale``: with weight decay 0, multiplying a loss by c is exactly multiplying SGD's learning rate
  by c. Does the found loss win by its shape or by its scale (an effective learning rate that
  cross-entropy was not given)? Trains the found loss (CMA-ES mean) scaled by ``--scales`` at the
  tuned learning rate, and cross-entropy at the learning rates ``--lrs``.
- ``data-fraction``: the found losses and both baselines with ``train_size`` replaced by ``--sizes``
  (``--lr``: at another learning rate; ``--losses``: only some of them).
- ``history``: the per-epoch validation curve of the found loss and cross-entropy on one seed
  (``--seed``), in this process: what a failed run looks like.

Each condition is an experiment directory under ``--out``/investigate/ whose one-shot evaluations
are cached (``evaluations/*.jsonl``), so reruns train only what is missing; the summary is
``--out``/investigate_<kind>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from taylorglo.search import ExperimentDir, init_experiment, make_backend
from taylorglo.search.analysis import evaluate_losses, welch_ttest
from taylorglo.search.journal import atomic_write


def _load_run_evidence():
    """run_evidence.py, the script next to this one, by its path (sys.path is left alone)."""
    path = Path(__file__).resolve().with_name("run_evidence.py")
    name = "taylorglo_evidence_run_evidence"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ev = _load_run_evidence()


def _scaled(vector: Sequence[float], c: float) -> list[float]:
    """The loss c * f: every coefficient times c, the centers (the last two numbers) unchanged."""
    v = [float(x) for x in vector]
    return [c * x for x in v[:-2]] + v[-2:]


def _stats(values: Sequence[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "below_90": sum(v < 0.9 for v in values),
    }


class Runner:
    def __init__(self, raw: dict, out: Path, seeds: int):
        self.raw, self.out = raw, out
        self.stored = ExperimentDir(out / "search").read_config()
        self.seeds = ev.final_seeds(raw)[:seeds]
        self.backend = None

    def measure(self, name: str, task_overrides: dict, specs: dict[str, dict]) -> dict[str, list[float]]:
        """Validation accuracies of each spec under the search's task with ``task_overrides``."""
        if task_overrides:
            directory = self.out / "investigate" / name
            init_experiment(directory, {**self.stored, "task": {**self.stored["task"], **task_overrides}})
        else:
            directory = self.out / "search"  # the final runs' own directory: their results are reused
        if ev.missing_trainings(directory, specs, self.seeds) and self.backend is None:
            self.backend = make_backend(ev.Backends(self.raw).execution)
        ev.log(f"{name}: {len(specs)} losses x {len(self.seeds)} seeds")
        evaluate_losses(
            directory,
            specs,
            self.seeds,
            evaluate_test=False,
            backend=self.backend,
            log=lambda m: ev.log(m),
        )
        res = ev.load_final(directory, specs, self.seeds)
        return {k: [ev.measured_value(r, "val_accuracy") or 0.0 for r in recs] for k, recs in res.items()}

    def close(self) -> None:
        if self.backend is not None:
            self.backend.shutdown()


def _compare(a: Sequence[float], b: Sequence[float]) -> dict:
    w = welch_ttest(a, b)
    return {"diff": w["mean_a"] - w["mean_b"], "p": w["p"], "d": w["cohens_d"]}


def scale(runner: Runner, scales: Sequence[float], lrs: Sequence[float]) -> dict:
    specs = ev.final_specs(runner.raw, runner.out / "search")
    lr = runner.stored["task"]["lr"]
    baselines = {b: specs[b] for b in ev.BASELINES}
    base = runner.measure("tuned", {}, {"found-mean": specs["found-mean"], **baselines})
    rows = {f"found-mean-x1 (lr {lr:g})": _stats(base["found-mean"])}
    rows.update({f"{b} lr {lr:g}": _stats(base[b]) for b in ev.BASELINES})
    variants = {
        f"found-mean-x{c:g}": {"vector": _scaled(specs["found-mean"]["vector"], c)} for c in scales if c != 1
    }
    if variants:
        got = runner.measure("tuned", {}, variants)
        for k, v in got.items():
            rows[f"{k} (lr {lr:g})"] = _stats(v)
    for other in lrs:
        if other == lr:
            continue
        got = runner.measure(f"ce-lr-{other:g}", {"lr": float(other)}, baselines)
        rows.update({f"{b} lr {other:g}": _stats(got[b]) for b in ev.BASELINES})
    best = {
        b: max((k for k in rows if k.startswith(b + " ")), key=lambda k: rows[k]["mean"])
        for b in ev.BASELINES
    }
    for k, v in rows.items():
        ev.log(
            f"  {k}: {100 * v['mean']:.2f} +- {100 * (v['std'] or 0):.2f} (n {v['n']}, runs < 90%: {v['below_90']})"
        )
    ev.log(f"scale: best baseline settings {best}")
    return {
        "seeds": runner.seeds,
        "metric": "val_accuracy",
        "tuned_lr": lr,
        "rows": rows,
        "best_baselines": best,
    }


def data_fraction(
    runner: Runner, sizes: Sequence[int], lr: float | None = None, losses: Sequence[str] = ()
) -> dict:
    specs = ev.final_specs(runner.raw, runner.out / "search")
    if losses:
        specs = {k: v for k, v in specs.items() if k in losses}
    out = {
        "seeds": runner.seeds,
        "metric": "val_accuracy",
        "lr": lr or runner.stored["task"]["lr"],
        "sizes": {},
    }
    for size in sizes:
        overrides = {} if size == runner.stored["task"].get("train_size") else {"train_size": int(size)}
        name = f"size-{size}"
        if lr is not None and lr != runner.stored["task"]["lr"]:
            overrides["lr"] = float(lr)
            name += f"-lr-{lr:g}"
        got = runner.measure(name, overrides, specs)
        tests = {
            f"{f} vs {b}": _compare(got[f], got[b])
            for f in ev.FOUND
            for b in ev.BASELINES
            if f in got and b in got and len(got[f]) > 1
        }
        out["sizes"][str(size)] = {"losses": {k: _stats(v) for k, v in got.items()}, "tests": tests}
        for k, v in got.items():
            ev.log(f"  size {size}: {k}: {100 * statistics.fmean(v):.2f} (n {len(v)})")
        for k, t in tests.items():
            ev.log(
                f"  size {size}: {k}: {100 * t['diff']:+.2f} points, p {ev.p_text(t['p'])}, d {t['d']:+.2f}"
            )
    return out


def history(runner: Runner, seed: int) -> dict:
    from taylorglo.train import LossSpec, TrainConfig, train

    specs = ev.final_specs(runner.raw, runner.out / "search")
    config = TrainConfig.from_dict(runner.stored["task"]).replace(seed=int(seed), num_threads=1)
    out = {"seed": seed, "metric": "val_accuracy", "runs": {}}
    for name in ("found-mean", "cross-entropy"):
        spec = specs[name]
        loss = LossSpec.taylor(spec["vector"], order=3) if "vector" in spec else LossSpec.parse(spec["loss"])
        result = train(config, loss, show_progress=False)  # the test split is not evaluated
        out["runs"][name] = {
            "status": result.status,
            "val_accuracy": result.val_accuracy,
            "history": result.history,
        }
        curve = " ".join(f"{100 * h['val_accuracy']:.0f}" for h in result.history)
        ev.log(f"history seed {seed} {name}: {result.status}, validation per epoch: {curve}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("kind", choices=["scale", "data-fraction", "history"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 2.0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.2, 0.4, 0.8])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--lr", type=float, default=None, help="data-fraction: another learning rate")
    parser.add_argument("--losses", nargs="+", default=[], help="data-fraction: only these losses")
    parser.add_argument("--seed", type=int, default=10005, help="history: the training seed")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    out = Path(args.out)
    runner = Runner(ev.load(args.config, args.set), out, args.seeds)
    try:
        if args.kind == "scale":
            summary = scale(runner, args.scales, args.lrs)
        elif args.kind == "history":
            summary = history(runner, args.seed)
        else:
            summary = data_fraction(runner, args.sizes, args.lr, args.losses)
    finally:
        runner.close()
    suffix = f"_lr{args.lr:g}" if args.kind == "data-fraction" and args.lr is not None else ""
    suffix = f"_seed{args.seed}" if args.kind == "history" else suffix
    atomic_write(
        out / f"investigate_{args.kind.replace('-', '_')}{suffix}.json", json.dumps(summary, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
