"""Write a preset as a pip-installable preset package.

    path = export_package(preset_from_vector([...], "my-loss"))  # any vector, Preset or document
    # pip install PATH; then TaylorLoss.from_preset("my-loss") in any environment

The package written under ``out`` (default ``./taylorglo-preset-NAME``)::

    pyproject.toml                  distribution taylorglo-preset-NAME, entry point in the group
                                    taylorglo.presets: NAME = "taylorglo_preset_NAME:preset.json"
    README.md                       formula (text and LaTeX), plot, provenance, results table
    loss_shape.png                  the loss shape against cross-entropy (when matplotlib is installed)
    src/taylorglo_preset_NAME/__init__.py, preset.json

Presets are data: this module never reads an experiment. A search's found loss becomes a preset
in ``taylorglo.search.export`` (``python -m taylorglo.search export DIR --name NAME``), which
builds the document from the experiment and hands it to :func:`export_package`.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from taylorglo.polynomial import TaylorPolynomial, infer_order, validate_variables
from taylorglo.presets.preset import NAME_PATTERN, Preset, invariant_summary

__all__ = [
    "check_name",
    "current_versions",
    "distribution_name",
    "export_package",
    "module_name",
    "plot_loss_shape",
    "preset_from_vector",
    "readme_text",
]

PathLike = Union[str, Path]


def current_versions() -> dict[str, Optional[str]]:
    """Versions of taylorglo, python, torch, cma and numpy in this environment (None when absent).

    Read from the installed distributions' metadata (presets import nothing above them, not even
    ``taylorglo.__version__``, whose package imports the loss).
    """
    from importlib import metadata

    def version(pkg: str) -> Optional[str]:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    out: dict[str, Optional[str]] = {"taylorglo": version("taylorglo"), "python": platform.python_version()}
    for pkg in ("torch", "cma", "numpy"):
        out[pkg] = version(pkg)
    return out


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"preset name {name!r} is not valid: use lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 64 characters (e.g. 'cifar10-allcnnc')"
        )
    return name


def distribution_name(preset_name: str) -> str:
    """``taylorglo-preset-NAME`` with '.' and '_' written as '-' (PEP 503 normal form)."""
    return "taylorglo-preset-" + re.sub(r"[-_.]+", "-", check_name(preset_name))


def module_name(preset_name: str) -> str:
    """``taylorglo_preset_NAME`` with every non-alphanumeric character written as '_'."""
    return "taylorglo_preset_" + re.sub(r"[^a-z0-9]+", "_", check_name(preset_name))


# ----------------------------------------------------------------------------------------------
def preset_from_vector(
    vector: Sequence[float] | TaylorPolynomial,
    name: str,
    *,
    order: Optional[int] = None,
    variables: Sequence[str] = ("x", "y"),
    description: str = "",
    provenance: Optional[Mapping[str, Any]] = None,
    results: Optional[Mapping[str, Any]] = None,
    num_classes: int = 10,
    versions: Optional[Mapping[str, Optional[str]]] = None,
    date: Optional[str] = None,
    tags: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Preset:
    """A preset from a bare parameter vector (original TaylorGLO layout) and what is known of it.

    ``provenance`` defaults to ``{"kind": "manual"}`` with everything else unknown; ``results``
    to None (not measured). ``versions`` defaults to this environment's, ``date`` to today (UTC).
    The invariant is computed at ``num_classes``.
    """
    check_name(name)
    if isinstance(vector, TaylorPolynomial):
        poly = vector
    else:
        values = [float(v) for v in vector]
        variables = validate_variables(variables)
        poly = TaylorPolynomial(
            values, order if order is not None else infer_order(len(values), variables), variables
        )
    doc = {
        "name": name,
        "description": description,
        "order": poly.order,
        "variables": list(poly.variables),
        "params": list(poly.vector),
        "provenance": dict(provenance) if provenance is not None else {"kind": "manual"},
        "results": dict(results) if results is not None else None,
        "invariant": invariant_summary(poly, num_classes),
        "versions": dict(versions) if versions is not None else current_versions(),
        "date": date if date is not None else datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "tags": list(tags),
        "notes": list(notes),
    }
    return Preset.from_dict(doc, source="preset_from_vector()")


# ----------------------------------------------------------------------------------------------
def plot_loss_shape(preset: Preset, path: PathLike) -> Optional[Path]:
    """Write the loss shape as a PNG (matplotlib, Agg); None when matplotlib is not installed.

    Left: f(1, y) (target class) and f(0, y) (other classes) over y in [0, 1], each shifted so that
    f(1, 1) = 0 and f(0, 0) = 0 (with hard labels a constant per label value changes nothing), with
    cross-entropy's f = x log y. Right: -g = -df/dy, the gradient of the loss with respect to each
    predicted probability, against cross-entropy's -1/y and 0. Polynomials with t are drawn at t = 1.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    poly = preset.polynomial
    t = {"t": 1.0} if poly.has_progress else {}
    ys = [i / 400 for i in range(401)]
    ys_ce = [y for y in ys if y >= 0.02]
    f1 = [poly(1.0, y, **t) - poly(1.0, 1.0, **t) for y in ys]
    f0 = [poly(0.0, y, **t) - poly(0.0, 0.0, **t) for y in ys]
    g1 = [-poly.derivative_y(1.0, y, **t) for y in ys]
    g0 = [-poly.derivative_y(0.0, y, **t) for y in ys]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ys, f1, "-", color="C0", label=f"{preset.name}: f(1, y) (target)")
    ax1.plot(ys, f0, "--", color="C0", label=f"{preset.name}: f(0, y) (other classes)")
    ax1.plot(ys_ce, [math.log(y) for y in ys_ce], "-", color="C1", label="cross-entropy: log y")
    ax1.plot(ys, [0.0] * len(ys), "--", color="C1", label="cross-entropy: 0")
    ax1.set_xlabel("predicted probability y")
    ax1.set_ylabel("f, shifted (loss = -sum_c f)")
    ax1.set_title("f(x, y)")
    lo, hi = min(f1 + f0 + [-4.0]), max(f1 + f0 + [0.5])
    ax1.set_ylim(max(lo, -20.0) - 0.5, min(hi, 20.0) + 0.5)

    ax2.plot(ys, g1, "-", color="C0", label=f"{preset.name}: -g(1, y)")
    ax2.plot(ys, g0, "--", color="C0", label=f"{preset.name}: -g(0, y)")
    ax2.plot(ys_ce, [-1.0 / y for y in ys_ce], "-", color="C1", label="cross-entropy: -1/y")
    ax2.plot(ys, [0.0] * len(ys), "--", color="C1", label="cross-entropy: 0")
    ax2.set_xlabel("predicted probability y")
    ax2.set_ylabel("-g = dLoss/dy (up to a constant)")
    ax2.set_title("-g(x, y) = -df/dy")
    lo, hi = min(g1 + g0 + [-4.0]), max(g1 + g0 + [0.5])
    ax2.set_ylim(max(lo, -50.0) - 0.5, min(hi, 50.0) + 0.5)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    title = preset.name + (" (t = 1)" if poly.has_progress else "")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _cell(v: Any) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, sort_keys=True) + "`"
    return str(v).replace("|", "\\|")


def _stats_cell(st: Optional[Mapping]) -> str:
    if not st:
        return "not measured"
    std = f" ± {st['std']:.4f}" if st.get("std") is not None else ""
    return f"{st['mean']:.4f}{std} (n = {st['n']})"


def readme_text(preset: Preset, plot: Optional[str] = None) -> str:
    """The README of an exported preset package (Markdown)."""
    dist = distribution_name(preset.name)
    lines = [
        f"# {dist}",
        "",
        preset.description or f"The TaylorGLO loss preset `{preset.name}`.",
        "",
        "## Install and use",
        "",
        "```bash",
        "pip install .            # from this folder (or the published name)",
        "```",
        "",
        "```python",
        "from taylorglo import TaylorLoss",
        f'loss_fn = TaylorLoss.from_preset("{preset.name}")          # a drop-in for nn.CrossEntropyLoss',
        "# or, with any taylorglo: taylorglo.presets.from_preset(...)",
        "```",
        "",
        f"With the trainer: `python -m taylorglo.train ... --loss preset:{preset.name}`. taylorglo finds the",
        "preset through the entry point group `taylorglo.presets` declared in `pyproject.toml`",
        "(`python -m taylorglo.presets list` shows it once installed).",
        "",
        "To publish: choose a license (add a `LICENSE` file and a `license` field to `pyproject.toml`),",
        "then `python -m build` and `twine upload dist/*`.",
        "",
        "## The loss",
        "",
        f"Order {preset.order} in the variables {', '.join(preset.variables)}; the per-sample loss is",
        "-sum over classes c of f(x_c, y_c), with x the one-hot label and y = softmax(logits).",
        "",
        "```text",
        f"f({', '.join(preset.variables)}) = {preset.formula('text')}",
        "```",
        "",
        "$$",
        f"f({', '.join(preset.variables)}) = {preset.formula('latex')}",
        "$$",
        "",
        "Parameter vector (original TaylorGLO layout: coefficients, then centers):",
        "",
        "```json",
        json.dumps(list(preset.params)),
        "```",
        "",
    ]
    if plot:
        lines += [
            f"![loss shape]({plot})",
            "",
            "Left: f(1, y) and f(0, y), shifted to f(1, 1) = 0 and f(0, 0) = 0, against cross-entropy's",
            "log y and 0. Right: -g = -df/dy, the gradient of the loss with respect to each predicted",
            "probability, against cross-entropy's -1/y and 0.",
            "",
        ]
    lines += ["## Results", ""]
    res = preset.results
    if res is None:
        lines += ["Not measured: no results were recorded with this loss.", ""]
    else:
        lines += [
            f"Metric: `{res['metric']}`.",
            "",
            "| loss | mean ± std (n) |",
            "|---|---|",
            f"| {preset.name} | {_stats_cell(res.get('preset'))} |",
            f"| cross-entropy (same protocol) | {_stats_cell(res.get('cross_entropy'))} |",
            "",
            f"p-value: {_cell(res.get('p_value'))}" + (f" ({res['test']})" if res.get("test") else ""),
            "",
        ]
        protocol = res.get("protocol")
        if isinstance(protocol, Mapping):
            lines.append("Protocol:")
            lines.append("")
            lines += [f"- {k.replace('_', ' ')}: {_cell(v)}" for k, v in protocol.items()]
            lines.append("")
        elif protocol is not None:
            lines += [f"Protocol: {_cell(protocol)}", ""]
    prov = preset.provenance or {}
    lines += ["## Where it was found", "", "| field | value |", "|---|---|"]
    for key in (
        "kind",
        "dataset",
        "model",
        "training_budget",
        "generations",
        "evaluations",
        "experiment",
        "candidate",
        "reference",
    ):
        lines.append(f"| {key} | {_cell(prov.get(key))} |")
    lines.append("")
    if prov.get("search_config") is not None:
        lines += [
            "Search config:",
            "",
            "```json",
            json.dumps(prov["search_config"], indent=1, sort_keys=True),
            "```",
            "",
        ]
    for key, title in (("known", "Known"), ("unknown", "Unknown")):
        if prov.get(key):
            lines += [f"{title}:", ""] + [f"- {item}" for item in prov[key]] + [""]
    if preset.invariant:
        inv = preset.invariant
        lines += [
            f"Invariant at n = {inv['num_classes']} classes (`taylorglo.polynomial.check_invariant`):",
            "",
        ]
        for rule in ("gradient", "original"):
            if rule in inv:
                verdict = "passes" if inv[rule]["passes"] else "violates"
                lines.append(f"- {rule} rule: {verdict} (margin {inv[rule]['margin']:.6g})")
        lines.append("")
    versions = ", ".join(f"{k} {v}" for k, v in (preset.versions or {}).items()) or "unknown"
    lines += [f"Versions: {versions}. Date: {preset.date or 'unknown'}.", ""]
    if preset.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in preset.notes] + [""]
    return "\n".join(lines)


def _pyproject(preset: Preset, version: str) -> str:
    dist, module = distribution_name(preset.name), module_name(preset.name)
    desc = (
        (preset.description or f"TaylorGLO loss preset {preset.name}")
        .replace("\\", "\\\\")
        .replace('"', '\\"')
    )
    return f"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "{version}"
description = "{desc}"
readme = "README.md"
requires-python = ">=3.9"
dependencies = ["taylorglo"]
keywords = ["taylorglo", "loss-function", "pytorch"]

[project.entry-points."taylorglo.presets"]
"{preset.name}" = "{module}:preset.json"

[tool.setuptools]
package-dir = {{"" = "src"}}
packages = ["{module}"]

[tool.setuptools.package-data]
{module} = ["preset.json"]
"""


def _init_py(preset: Preset) -> str:
    return f'''"""The taylorglo loss preset {preset.name!r} (package data: ``preset.json``).

taylorglo discovers it through the entry point group ``taylorglo.presets``; use it as
``TaylorLoss.from_preset({preset.name!r})`` or ``--loss preset:{preset.name}``.
"""

import json
from importlib import resources

PRESET_NAME = {preset.name!r}


def document() -> dict:
    """The preset document (JSON)."""
    return json.loads(resources.files(__name__).joinpath("preset.json").read_text(encoding="utf-8"))
'''


def export_package(
    source: Preset | Mapping[str, Any] | PathLike | Sequence[float] | TaylorPolynomial,
    out: Optional[PathLike] = None,
    *,
    name: Optional[str] = None,
    order: Optional[int] = None,
    variables: Sequence[str] = ("x", "y"),
    description: Optional[str] = None,
    version: str = "0.1.0",
    overwrite: bool = False,
    plot: bool = True,
) -> Path:
    """Write a pip-installable preset package to ``out`` (default ``./taylorglo-preset-NAME``).

    ``source`` is one of

    * a :class:`Preset` or a preset document (``name`` renames it),
    * a bare parameter vector or ``TaylorPolynomial`` (``name`` required; ``order``,
      ``variables``, ``description`` as in :func:`preset_from_vector`).

    Refuses to write into a non-empty folder unless ``overwrite`` (which replaces the files this
    function writes and leaves others alone). ``version`` is the package's version. Returns the folder.
    """
    if isinstance(source, Preset) or isinstance(source, Mapping):
        preset = source if isinstance(source, Preset) else Preset.from_dict(source, source="export_package()")
        if name is not None and name != preset.name:
            doc = preset.to_dict()
            doc["name"] = check_name(name)
            preset = Preset.from_dict(doc, source="export_package()")
        if description is not None and description != preset.description:
            doc = preset.to_dict()
            doc["description"] = description
            preset = Preset.from_dict(doc, source="export_package()")
    elif isinstance(source, (str, Path)):
        raise TypeError(
            f"export_package({str(source)!r}): an experiment directory is exported by the search: "
            "taylorglo.search.export.export_experiment(DIR, NAME) or `python -m taylorglo.search export DIR --name NAME`"
        )
    else:
        if name is None:
            raise ValueError("export_package(vector) needs name= for the preset")
        preset = preset_from_vector(
            source, name, order=order, variables=variables, description=description or ""
        )
    if not re.match(r"^[0-9]+(\.[0-9]+)*([a-z]+[0-9]*)?$", version):
        raise ValueError(f"version must be a PEP 440 version such as '0.1.0', got {version!r}")
    out = Path(out) if out is not None else Path(distribution_name(preset.name))
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True (--overwrite) or choose another --out"
        )
    module = module_name(preset.name)
    pkg = out / "src" / module
    pkg.mkdir(parents=True, exist_ok=True)
    # Round trip through the validator once more: what we ship is what the registry will read.
    text = preset.to_json()
    Preset.from_json(text, source=str(pkg / "preset.json"))
    (pkg / "preset.json").write_text(text, encoding="utf-8")
    (pkg / "__init__.py").write_text(_init_py(preset), encoding="utf-8")
    (out / "pyproject.toml").write_text(_pyproject(preset, version), encoding="utf-8")
    plot_name = None
    if plot:
        written = plot_loss_shape(preset, out / "loss_shape.png")
        if written is not None:
            plot_name = written.name
        else:
            print(
                f"{out / 'loss_shape.png'} skipped: matplotlib is not installed (pip install matplotlib)",
                file=sys.stderr,
            )
    (out / "README.md").write_text(readme_text(preset, plot_name), encoding="utf-8")
    return out
