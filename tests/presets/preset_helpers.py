"""Helpers for the preset tests: fake installed distributions, fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from taylorglo.presets import registry

REPO = Path(__file__).resolve().parents[2]


def make_dist(
    root: Path, name: str, entry_points: dict[str, str], files: dict[str, str] | None = None
) -> Path:
    """A fake installed distribution under ``root`` (a sys.path entry): a ``.dist-info`` with
    ``METADATA`` and ``entry_points.txt`` (group ``taylorglo.presets``), plus ``files`` (path -> text)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = ["[taylorglo.presets]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return info


def preset_doc(name: str, params=(0.5, -1.0, 2.0, 0.5, 0.5), **extra) -> dict:
    return {"name": name, "params": list(params), **extra}


def run_python(code: str, *paths: Path, env: dict | None = None, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter with ``paths`` first on PYTHONPATH; it must print one JSON
    line last, which is returned (with ``returncode`` and ``stderr``)."""
    full = dict(os.environ)
    full.pop(registry.DISABLE_ENV, None)
    full["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(REPO), full.get("PYTHONPATH", "")])
    full.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(lines[-1])
    out["stderr"] = proc.stderr
    return out


# The body every discovery subprocess runs: list the presets, keep the warnings, report the error.
DISCOVER = """
import json, warnings
import taylorglo  # must never fail because of a plugin
from taylorglo import presets
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        names, error = presets.list_presets(), None
    except Exception as e:
        names, error = None, f"{type(e).__name__}: {e}"
out = {
    "names": names,
    "error": error,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}
"""
