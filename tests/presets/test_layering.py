"""Presets are data: they import nothing above ``taylorglo.polynomial`` (no loss, no experiment).

The whole package's import contract (``[tool.importlinter]`` in pyproject.toml: search -> train ->
loss -> ops/reference -> presets -> polynomial, no cycles) is checked by ``lint-imports`` in
``.ci/run``; these tests run it too when import-linter is installed, and refuse what it cannot see:
an import through ``importlib.import_module`` of a literal taylorglo module name.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "taylorglo"


def test_no_module_hides_an_import_of_taylorglo_behind_importlib():
    hidden = re.compile(r"""import_module\(\s*["']taylorglo""")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if hidden.search(line)
    ]
    assert found == []


def test_presets_import_only_polynomial_from_taylorglo():
    # every import statement, those inside functions included (as grimp reads them)
    for path in sorted((PACKAGE / "presets").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name == "taylorglo" or name.startswith("taylorglo."):
                    assert name.startswith(("taylorglo.presets", "taylorglo.polynomial")), (
                        f"{path.name}:{node.lineno} imports {name}"
                    )


def test_the_import_contract_holds():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install import-linter); .ci/run checks it")
    proc = subprocess.run([lint], capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout
