"""``python -m taylorglo.search``: find Taylor losses that train better than cross-entropy.

With no arguments: run (or resume) the built-in default experiment in ./taylorglo-runs/default
and compare the best loss found with cross-entropy. Subcommands::

    run CONFIG_OR_DIR [--dir DIR] [--set section.key=value ...]   start or resume a search
    init DIR --config FILE [--set ...]                             create an experiment directory
    status DIR                      exit 0 when complete, 1 when not (2 on errors)
    analyze DIR [DIR ...]           generations table (CSV), plots, the best loss and its formula
    baselines DIR [--lrs ...]       tune cross-entropy, label smoothing and the chosen loss's
                                    learning rate on one grid and the same seeds (validation only)
    evaluate DIR [--seeds N]        the chosen loss against the best tuned baseline on N fresh seeds
    ttest A [B]                     Welch's t-test: the chosen loss against the best tuned baseline
                                    of A, or between two evaluation sets (DIR or .jsonl)
    invocation DIR GEN INDEX        the standalone training command of one candidate
    export DIR --name NAME [--out PATH] [--candidate best|mean]
                                    write the found loss as a pip-installable preset package

Exit codes: 0 success, 1 runtime error or incomplete (status), 2 bad config or usage, 3 the
directory is in use by another search.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("taylorglo-runs") / "default"


def _error(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _load_for_run(target: str, dir_arg: str | None, overrides: list[str]):
    """(directory, config or None) for ``run``: a config file starts a new experiment, a dir resumes one."""
    from taylorglo.search.config import ExperimentConfig, apply_overrides, load_config
    from taylorglo.search.journal import ExperimentDir

    path = Path(target)
    if path.is_dir():
        if dir_arg and Path(dir_arg).resolve() != path.resolve():
            raise ValueError("give either an experiment directory or --dir, not both")
        exp = ExperimentDir(path)
        if not exp.exists():
            raise FileNotFoundError(f"{path} is not an experiment directory (no config.json)")
        if overrides:
            return path, ExperimentConfig.from_dict(apply_overrides(exp.read_config(), overrides))
        return path, None
    config = load_config(path, overrides)
    directory = Path(dir_arg) if dir_arg else Path("taylorglo-runs") / path.stem
    return directory, config


def _print_result(result, cfg) -> None:
    from taylorglo.search.analysis import formula_of

    print(
        f"{result.directory}: {result.generations} generations, {result.evaluations} evaluations; {result.stop_reason}"
    )
    b = result.chosen or result.best
    if b is not None:
        if result.chosen is not None:
            print(
                f"chosen: {b['id']} (mean validation accuracy {b['mean_val_accuracy']:.4f} on the final "
                "selection's fresh seeds)"
            )
        else:
            print(
                f"best: fitness {b['fitness']:.4f} (val accuracy {_fmt(b.get('val_accuracy'))}) "
                f"generation {b['generation']} candidate {b['index']}"
            )
        print(f"  vector: [{', '.join(f'{v:.6g}' for v in b['vector'])}]")
        if b.get("lr") is not None:
            print(f"  learning rate: {b['lr']:.6g}")
        print(f"  f(x, y) = {formula_of(b['vector'], cfg.search.order, cfg.search.variables)}")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def cmd_run(args) -> int:
    from taylorglo.search.config import ExperimentConfig
    from taylorglo.search.runner import run_search

    directory, config = _load_for_run(args.target, args.dir, args.set or [])
    result = run_search(directory, config, progress=None if not args.no_progress else False)
    from taylorglo.search.journal import ExperimentDir

    cfg = ExperimentConfig.from_dict(ExperimentDir(directory).read_config(), validate_task=False)
    _print_result(result, cfg)
    return 0


def cmd_init(args) -> int:
    from taylorglo.search.config import load_config
    from taylorglo.search.runner import init_experiment

    config = load_config(args.config, args.set or [])
    exp = init_experiment(args.dir, config)
    print(f"initialized {exp.path}; run it with: python -m taylorglo.search run {exp.path}")
    return 0


def cmd_status(args) -> int:
    from taylorglo.search.analysis import experiment_status

    st = experiment_status(args.dir)
    state = "complete" if st["complete"] else "not complete"
    print(f"{st['directory']}: {state}; {st['generations_done']}/{st['generation_limit']} generations done")
    if st["open_generation"] is not None:
        print(
            f"open generation {st['open_generation']}: {st['open_generation_evaluated']}/"
            f"{st['population_size'] * st['seeds_per_candidate']} trainings evaluated"
        )
    print(f"evaluations: {st['evaluations']}, failed or penalized: {st['failures']}")
    for line in integrity_lines(st):
        print(line)
    if st["running"]:
        print(f"running: {st['running']}")
    if st["best"] is not None:
        b = st["best"]
        print(f"best fitness {b['fitness']:.4f} (generation {b['generation']}, candidate {b['index']})")
    sel = st["selection"]
    if sel and sel.get("chosen"):
        c = sel["chosen"]
        print(
            f"final selection: chose {c['id']} (mean validation accuracy {c['mean_val_accuracy']:.4f} "
            f"on {len(sel['seeds'])} fresh seeds)"
        )
    elif sel:
        print(
            f"final selection: in progress ({len(sel['contenders'])} contenders x {len(sel['seeds'])} seeds)"
        )
    tuned = st["baselines"]
    if tuned and tuned.get("best_baseline"):
        bb = tuned["best_baseline"]
        print(
            f"best tuned baseline: {bb['arm']} at lr {bb['lr']:.4g}, validation {bb['mean_val_accuracy']:.4f}"
        )
    from taylorglo.search.journal import ExperimentDir

    exp = ExperimentDir(args.dir)
    for rec in st["failed"][-args.failures :] if args.failures else []:
        print(
            f"- generation {rec['generation']} candidate {rec['index']}: {rec['status']} {rec.get('error') or ''}"
        )
        log = exp.log_path(rec["generation"], rec["index"])
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-5:]
            for line in tail:
                print(f"    | {line}")
    return 0 if st["complete"] else 1


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


def cmd_analyze(args) -> int:
    from taylorglo.search.analysis import (
        best_record,
        experiment_status,
        formula_of,
        generation_table,
        plot_experiment,
        report_lines,
        table_text,
        write_csv,
    )
    from taylorglo.search.config import ExperimentConfig
    from taylorglo.search.journal import ExperimentDir
    from taylorglo.search.runner import aggregate_candidates

    dirs = []
    for d in args.dirs:
        p = Path(d)
        if (p / "config.json").is_file():
            dirs.append(p)
        elif p.is_dir():
            dirs += sorted(q.parent for q in p.glob("*/config.json"))
        else:
            return _error(f"{d} is not an experiment directory or a folder of them", 2)
    if not dirs:
        return _error("no experiment directories found", 2)
    summary = []
    for d in dirs:
        cfg = ExperimentConfig.from_dict(ExperimentDir(d).read_config(), validate_task=False)
        rows = generation_table(d)
        write_csv(d / "generations.csv", rows)
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
        if len(dirs) > 1:
            continue
        print(
            table_text(
                rows,
                [
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
                ]
                + (["lr_min", "lr_median", "lr_max"] if cfg.search.learning_rate == "searched" else []),
            )
        )
        print(
            f"(written to {d / 'generations.csv'}; sigma after each generation's update; scale: push at the "
            "uniform prediction relative to cross-entropy's)"
        )
        for line in report_lines(d):
            print(line)
        if best is not None:
            top = sorted(
                aggregate_candidates(ExperimentDir(d).evaluations(), cfg.search.fitness),
                key=lambda r: r["fitness"],
            )[: args.top]
            print("\nbest candidates:")
            print(
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
                        for r in top
                    ]
                )
            )
            print(f"\nbest vector: [{', '.join(f'{v:.6g}' for v in best['vector'])}]")
            print(f"f(x, y) = {formula_of(best['vector'], cfg.search.order, cfg.search.variables)}")
        if not args.no_plots:
            paths = plot_experiment(d)
            if paths:
                print("plots: " + ", ".join(str(p) for p in paths))
            else:
                print("plots skipped: matplotlib is not installed (pip install matplotlib)")
    if len(dirs) > 1:
        print(table_text(summary))
        if args.dirs and Path(args.dirs[0]).is_dir() and len(args.dirs) == 1:
            write_csv(Path(args.dirs[0]) / "summary.csv", summary)
    return 0


def _compare(directory: Path, seeds: int, *, test: bool) -> dict:
    """Train the chosen loss and the best tuned baseline on fresh seeds; print means and the tests."""
    from taylorglo.search.analysis import compare_with_baseline

    out = compare_with_baseline(directory, seeds, test=test)
    for metric in ("val_accuracy", "test_accuracy"):
        t = out.get(metric)
        if t is None:
            continue
        print(
            f"{metric}: chosen loss {t['mean_a']:.4f} ± {t['std_a']:.4f}  {out['baseline']} "
            f"{t['mean_b']:.4f} ± {t['std_b']:.4f}  (n = {t['n_a']}, {t['n_b']}; wins {t['wins']}/{t['pairs']})  "
            f"Welch p = {t['p']:.3g}"
            + (f", Mann-Whitney p = {t['mann_whitney_p']:.3g}" if t.get("mann_whitney_p") is not None else "")
        )
    return out


def cmd_evaluate(args) -> int:
    _compare(Path(args.dir), args.seeds, test=not args.no_test)
    return 0


def cmd_baselines(args) -> int:
    from taylorglo.search.baselines import run_baselines

    summary = run_baselines(args.dir, lrs=args.lrs)
    for line in baseline_lines(summary):
        print(line)
    return 0 if summary["complete"] else 1


def baseline_lines(summary: dict) -> list[str]:
    from taylorglo.search.analysis import table_text

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


def _read_evaluations(spec: str) -> list[dict]:
    p = Path(spec)
    if p.is_dir():
        p = p / "evaluations" / "chosen.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{spec}: no evaluations (run `evaluate` on the experiment first)")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def cmd_ttest(args) -> int:
    from taylorglo.search.analysis import welch_ttest

    if args.b is None:
        from taylorglo.search.journal import ExperimentDir

        tuned = ExperimentDir(args.a).read_baselines() if Path(args.a).is_dir() else None
        if not tuned or not tuned.get("comparison"):
            return _error(
                f"{args.a} has no tuned baselines to compare with: run `python -m taylorglo.search "
                f"baselines {args.a}` first, or give two evaluation sets",
                2,
            )
        for line in baseline_lines(tuned)[2:]:
            print(line)
        c = tuned["comparison"]
        t = "inf" if c["t"] is None else f"{c['t']:.3f}"
        d = "inf" if c["cohens_d"] is None else f"{c['cohens_d']:.3f}"
        print(f"Welch t = {t}, df = {c['df']:.1f}, Cohen's d = {d}")
        return 0
    a = [r[args.metric] for r in _read_evaluations(args.a) if isinstance(r.get(args.metric), (int, float))]
    b = [r[args.metric] for r in _read_evaluations(args.b) if isinstance(r.get(args.metric), (int, float))]
    t = welch_ttest(a, b)
    print(
        f"{args.metric}: A {t['mean_a']:.4f} ± {t['std_a']:.4f} (n={t['n_a']})  B {t['mean_b']:.4f} ± {t['std_b']:.4f} (n={t['n_b']})"
    )
    print(f"Welch t = {t['t']:.3f}, df = {t['df']:.1f}, p = {t['p']:.4g}, Cohen's d = {t['cohens_d']:.3f}")
    return 0


def cmd_invocation(args) -> int:
    from taylorglo.search.config import ExperimentConfig
    from taylorglo.search.journal import ExperimentDir

    exp = ExperimentDir(args.dir)
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    stored = exp.read_population(args.generation)
    if stored is None:
        return _error(f"{args.dir} has no generation {args.generation}", 2)
    cands = stored[0]["candidates"]
    if not 0 <= args.index < len(cands):
        return _error(f"generation {args.generation} has candidates 0..{len(cands) - 1}, not {args.index}", 2)
    cand = cands[args.index]
    task = dict(cfg.task, seed=cand["seed"])
    from taylorglo.train.losses import LossSpec

    loss = str(LossSpec.taylor(cand["vector"], order=cfg.search.order, variables=tuple(cfg.search.variables)))
    print(
        "python -m taylorglo.train --config-json "
        + shlex.quote(json.dumps(task, sort_keys=True))
        + " --loss "
        + shlex.quote(loss)
    )
    return 0


def cmd_default(args) -> int:
    from taylorglo.search.config import ExperimentConfig, default_experiment
    from taylorglo.search.journal import ExperimentDir
    from taylorglo.search.runner import run_search

    directory = Path(args.dir) if args.dir else DEFAULT_DIR
    t0 = time.perf_counter()
    config = ExperimentConfig.from_dict(default_experiment())
    print(
        f"default experiment in {directory} (resumed if it exists): digits, small CNN, "
        f"{config.search.population_size} candidates x {config.search.generations} generations"
    )
    result = run_search(directory, config, progress=None)
    cfg = ExperimentConfig.from_dict(ExperimentDir(directory).read_config(), validate_task=False)
    _print_result(result, cfg)
    from taylorglo.search.baselines import run_baselines

    print("tuning the baselines' learning rates (and the chosen loss's) on the same grid and seeds ...")
    for line in baseline_lines(run_baselines(directory, log=None)):
        print(line)
    _compare(directory, 3, test=True)
    print(
        f"total time {time.perf_counter() - t0:.0f} s; more: python -m taylorglo.search analyze {directory}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taylorglo.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", help=f"directory of the default experiment (default {DEFAULT_DIR})")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="start or resume a search")
    r.add_argument("target", help="a config file (.toml/.json) or an experiment directory")
    r.add_argument("--dir", help="experiment directory for a config file (default taylorglo-runs/<name>)")
    r.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. search.seed=3"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    i = sub.add_parser("init", help="create an experiment directory from a config file")
    i.add_argument("dir")
    i.add_argument("--config", required=True)
    i.add_argument("--set", action="append", metavar="KEY=VALUE")
    i.set_defaults(func=cmd_init)
    s = sub.add_parser("status", help="where an experiment stands (exit 0: complete, 1: not)")
    s.add_argument("dir")
    s.add_argument(
        "--failures", type=int, default=10, help="show the last N failed candidates with log tails"
    )
    s.set_defaults(func=cmd_status)
    a = sub.add_parser("analyze", help="tables, plots, the best loss")
    a.add_argument("dirs", nargs="+")
    a.add_argument("--top", type=int, default=5)
    a.add_argument("--no-plots", action="store_true")
    a.set_defaults(func=cmd_analyze)
    b = sub.add_parser(
        "baselines", help="tune cross-entropy, label smoothing and the chosen loss on one learning-rate grid"
    )
    b.add_argument("dir")
    b.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        help="the learning-rate grid (default: search.baseline_lrs or derived)",
    )
    b.set_defaults(func=cmd_baselines)
    e = sub.add_parser("evaluate", help="the chosen loss against the best tuned baseline over N fresh seeds")
    e.add_argument("dir")
    e.add_argument("--seeds", type=int, default=5)
    e.add_argument("--no-test", action="store_true", help="validation split only")
    e.set_defaults(func=cmd_evaluate)
    t = sub.add_parser("ttest", help="Welch's t-test between two sets of evaluations")
    t.add_argument("a", help="an experiment dir (its evaluations/chosen.jsonl) or an evaluations .jsonl")
    t.add_argument(
        "b", nargs="?", help="(optional) without it: A's chosen loss against its best tuned baseline"
    )
    t.add_argument("--metric", default="test_accuracy")
    t.set_defaults(func=cmd_ttest)
    v = sub.add_parser("invocation", help="the standalone training command of one candidate")
    v.add_argument("dir")
    v.add_argument("generation", type=int)
    v.add_argument("index", type=int)
    v.set_defaults(func=cmd_invocation)
    from taylorglo.presets.cli import add_export_arguments, cmd_export

    x = sub.add_parser("export", help="write the best loss as a pip-installable preset package")
    add_export_arguments(x, dir_required=True)
    x.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    from taylorglo.search.config import ConfigError
    from taylorglo.search.journal import ExperimentLocked

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_default)
    try:
        return func(args)
    except ConfigError as exc:
        return _error(str(exc), 2)
    except ExperimentLocked as exc:
        return _error(str(exc), 3)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc), 2)
    except KeyboardInterrupt:
        return _error("interrupted; run the same command again to resume", 130)
    except Exception as exc:
        if os.environ.get("TAYLORGLO_DEBUG"):
            raise
        return _error(f"{type(exc).__name__}: {exc} (set TAYLORGLO_DEBUG=1 for the traceback)", 1)


if __name__ == "__main__":
    sys.exit(main())
