"""The search CLI prints no third-party warnings where matplotlib is not installed (issue 15).

pycma warns "Could not import matplotlib.pyplot" when it is first imported without matplotlib;
every import of cma (including the one unpickling a CMA-ES state triggers) goes through
``taylorglo.search.strategy.import_cma``, which silences it. Each command runs in a fresh
interpreter with matplotlib hidden (``sys.modules['matplotlib'] = None``), so that neither the
import order of other tests nor an installed matplotlib can hide a warning.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import subprocess_env, synthetic_config

pytestmark = pytest.mark.slow  # each test starts the CLI in a fresh interpreter

# python -c: hide matplotlib, then run ``python -m taylorglo.search`` with the remaining arguments.
HIDE_MATPLOTLIB = (
    "import runpy, sys; sys.modules['matplotlib'] = None; "
    "runpy.run_module('taylorglo.search', run_name='__main__', alter_sys=True)"
)


def _cli_without_matplotlib(*args, cwd):
    return subprocess.run(
        [sys.executable, "-c", HIDE_MATPLOTLIB, *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A finished 2-generation synthetic search (its CMA-ES state is pickled in state.pkl)."""
    from taylorglo.search import run_search

    d = tmp_path_factory.mktemp("quiet") / "exp"
    run_search(d, synthetic_config(search={"generations": 2, "population_size": 4}), progress=False, log=None)
    return d


def test_help_prints_no_warning(tmp_path):
    out = _cli_without_matplotlib("--help", cwd=tmp_path)
    assert out.returncode == 0 and "usage:" in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("command", ["status", "analyze"])
def test_status_and_analyze_print_no_warning_without_matplotlib(experiment, command, tmp_path):
    out = _cli_without_matplotlib(command, str(experiment), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    if command == "analyze":  # the skipped plots are announced once, on stdout, with the pip command
        lines = [line for line in out.stdout.splitlines() if "matplotlib" in line]
        assert lines == ["plots skipped: matplotlib is not installed (pip install matplotlib)"]
