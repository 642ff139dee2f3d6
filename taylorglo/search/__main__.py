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

This module parses arguments and prints; the work is in library functions (``runner``,
``baselines``, ``analysis``, ``export``) that tests call directly.
"""

from __future__ import annotations

import argparse
import os
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


def _print(lines) -> None:
    for line in lines:
        print(line)


def cmd_run(args) -> int:
    from taylorglo.search.analysis import result_lines
    from taylorglo.search.runner import run_search

    directory, config = _load_for_run(args.target, args.dir, args.set or [])
    result = run_search(directory, config, progress=None if not args.no_progress else False)
    _print(result_lines(result))
    return 0


def cmd_init(args) -> int:
    from taylorglo.search.config import load_config
    from taylorglo.search.runner import init_experiment

    config = load_config(args.config, args.set or [])
    exp = init_experiment(args.dir, config)
    print(f"initialized {exp.path}; run it with: python -m taylorglo.search run {exp.path}")
    return 0


def cmd_status(args) -> int:
    from taylorglo.search.analysis import status_lines

    lines, complete = status_lines(args.dir, failures=args.failures)
    _print(lines)
    return 0 if complete else 1


def cmd_analyze(args) -> int:
    from taylorglo.search.analysis import analyze

    try:
        report = analyze(args.dirs, top=args.top, plots=not args.no_plots)
    except ValueError as exc:
        return _error(str(exc), 2)
    _print(report["lines"])
    return 0


def _compare(directory: Path, seeds: int, *, test: bool) -> dict:
    """Train the chosen loss and the best tuned baseline on fresh seeds; print means and the tests."""
    from taylorglo.search.analysis import compare_with_baseline, comparison_lines

    out = compare_with_baseline(directory, seeds, test=test)
    _print(comparison_lines(out))
    return out


def cmd_evaluate(args) -> int:
    _compare(Path(args.dir), args.seeds, test=not args.no_test)
    return 0


def cmd_baselines(args) -> int:
    from taylorglo.search.analysis import baseline_lines
    from taylorglo.search.baselines import run_baselines

    summary = run_baselines(args.dir, lrs=args.lrs)
    _print(baseline_lines(summary))
    return 0 if summary["complete"] else 1


def cmd_ttest(args) -> int:
    from taylorglo.search.analysis import ttest_lines

    try:
        lines = ttest_lines(args.a, args.b, args.metric)
    except ValueError as exc:
        return _error(str(exc), 2)
    _print(lines)
    return 0


def cmd_invocation(args) -> int:
    from taylorglo.search.analysis import invocation

    try:
        command = invocation(args.dir, args.generation, args.index)
    except ValueError as exc:
        return _error(str(exc), 2)
    print(command)
    return 0


def cmd_export(args) -> int:
    from taylorglo.presets.cli import package_options
    from taylorglo.search.export import export_experiment

    try:
        path = export_experiment(args.dir, args.name, candidate=args.candidate, **package_options(args))
    except FileExistsError as exc:  # usage, not a crash
        return _error(str(exc), 2)
    print(f"wrote {path}; install it with: pip install {path}")
    return 0


def cmd_default(args) -> int:
    from taylorglo.search.analysis import baseline_lines, result_lines
    from taylorglo.search.baselines import run_baselines
    from taylorglo.search.config import ExperimentConfig, default_experiment
    from taylorglo.search.runner import run_search

    directory = Path(args.dir) if args.dir else DEFAULT_DIR
    t0 = time.perf_counter()
    config = ExperimentConfig.from_dict(default_experiment())
    print(
        f"default experiment in {directory} (resumed if it exists): digits, small CNN, "
        f"{config.search.population_size} candidates x {config.search.generations} generations"
    )
    result = run_search(directory, config, progress=None)
    _print(result_lines(result))
    print("tuning the baselines' learning rates (and the chosen loss's) on the same grid and seeds ...")
    _print(baseline_lines(run_baselines(directory, log=None)))
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
    from taylorglo.presets.cli import add_package_arguments

    x = sub.add_parser("export", help="write the found loss as a pip-installable preset package")
    x.add_argument("dir", help="a search experiment directory")
    x.add_argument("--name", required=True, help="the preset name, e.g. cifar10-allcnnc")
    x.add_argument(
        "--candidate",
        choices=("best", "mean"),
        default="best",
        help="the search's chosen (else best measured) candidate, or the final CMA-ES mean (default best)",
    )
    add_package_arguments(x)
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
