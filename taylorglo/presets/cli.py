"""The command line of ``python -m taylorglo.presets``: list, show and export loss presets.

    list [PATTERN] [--long]                       the available presets (shell wildcards)
    show NAME [--json]                            one preset: formula, provenance, results
    export --vector V1,V2,... --name NAME [--order K] [--variables x,y]
    export --preset NAME [--name NEW]             re-export a registered preset

A search's found loss is exported by the search, which reads experiments (presets never do):
``python -m taylorglo.search export DIR --name NAME [--candidate best|mean]``.

Exit codes: 0 success, 2 bad usage or input (unknown preset, malformed document, bad directory),
1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys


def _error(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def cmd_list(args) -> int:
    from taylorglo.presets import get_preset, list_presets

    names = list_presets(args.pattern)
    if not args.long:
        for name in names:
            print(name)
        return 0
    width = max((len(n) for n in names), default=4)
    for name in names:
        p = get_preset(name)
        print(f"{name:<{width}}  order {p.order}  {p.description}  [{p.source}]")
    return 0


def cmd_show(args) -> int:
    from taylorglo.presets import get_preset

    p = get_preset(args.name)
    if args.json:
        print(p.to_json(), end="")
        return 0
    print(f"{p.name}: {p.description}")
    print(f"source: {p.source}")
    print(f"order {p.order}, variables {', '.join(p.variables)}")
    print(f"params: [{', '.join(repr(v) for v in p.params)}]")
    print(f"f = {p.formula('text')}")
    print(f"latex: {p.formula('latex')}")
    prov = p.provenance or {}
    print("provenance: " + (json.dumps(prov, indent=1) if prov else "unknown"))
    print("results: " + (json.dumps(p.results, indent=1) if p.results else "not measured"))
    if p.invariant:
        parts = [
            f"{rule} {'passes' if p.invariant[rule]['passes'] else 'violates'} ({p.invariant[rule]['margin']:.6g})"
            for rule in ("gradient", "original")
            if rule in p.invariant
        ]
        print(f"invariant at n = {p.invariant['num_classes']}: " + "; ".join(parts))
    print(f"versions: {json.dumps(p.versions) if p.versions else 'unknown'}; date: {p.date or 'unknown'}")
    for note in p.notes:
        print(f"note: {note}")
    return 0


def package_options(args) -> dict:
    """The ``export_package`` options of parsed ``add_package_arguments`` arguments."""
    options = dict(out=args.out, version=args.version, overwrite=args.overwrite, plot=not args.no_plot)
    if args.description is not None:
        options["description"] = args.description
    return options


def cmd_export(args) -> int:
    from taylorglo.presets import get_preset
    from taylorglo.presets.export import export_package

    vector, preset = args.vector, args.preset
    if getattr(args, "dir", None) is not None:
        return _error(
            f"an experiment directory is exported by the search: python -m taylorglo.search export "
            f"{args.dir} --name NAME",
            2,
        )
    if (vector is None) == (preset is None):
        return _error("give exactly one of --vector or --preset", 2)
    if preset is None and args.name is None:
        return _error("--vector needs --name", 2)
    options = package_options(args)
    try:
        if preset is not None:
            path = export_package(get_preset(preset), name=args.name, **options)
        else:
            try:
                values = [float(v) for v in vector.split(",") if v.strip()]
            except ValueError:
                return _error(f"--vector must be comma-separated numbers, got {vector!r}", 2)
            variables = tuple(v.strip() for v in args.variables.split(","))
            path = export_package(values, name=args.name, order=args.order, variables=variables, **options)
    except FileExistsError as exc:  # usage, not a crash: the same exit code from both CLIs
        return _error(str(exc), 2)
    print(f"wrote {path}; install it with: pip install {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m taylorglo.presets", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the available presets")
    ls.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'ce-*'")
    ls.add_argument("--long", "-l", action="store_true", help="with order, description and source")
    ls.set_defaults(func=cmd_list)
    sh = sub.add_parser("show", help="one preset in full")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true", help="the preset document as JSON")
    sh.set_defaults(func=cmd_show)
    ex = sub.add_parser("export", help="write a pip-installable preset package")
    ex.add_argument("dir", nargs="?", help=argparse.SUPPRESS)  # pointed to `taylorglo.search export`
    ex.add_argument("--name", help="the preset name (required with --vector; renames with --preset)")
    ex.add_argument("--vector", help="a bare parameter vector, comma-separated (original layout)")
    ex.add_argument("--order", type=int, help="with --vector: the order (inferred from the length)")
    ex.add_argument("--variables", default="x,y", help="with --vector: x,y or x,y,t (default x,y)")
    ex.add_argument("--preset", help="re-export a registered preset")
    add_package_arguments(ex)
    ex.set_defaults(func=cmd_export)
    return p


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    """The package options of ``export`` (also used by ``python -m taylorglo.search export``)."""
    parser.add_argument("--out", help="the package folder (default ./taylorglo-preset-NAME)")
    parser.add_argument("--description", help="one line describing the loss")
    parser.add_argument("--version", default="0.1.0", help="the package version (default 0.1.0)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--no-plot", action="store_true", help="no loss-shape plot")


def main(argv: list[str] | None = None) -> int:
    from taylorglo.presets import PresetConflictError, PresetError, UnknownPresetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UnknownPresetError as exc:
        return _error(str(exc), 2)
    except (PresetError, PresetConflictError, FileNotFoundError, FileExistsError, ValueError) as exc:
        return _error(str(exc), 2)
    except Exception as exc:
        return _error(f"{type(exc).__name__}: {exc}", 1)
