"""Export: a preset becomes a package that a real ``pip install`` makes visible to taylorglo.

Exporting a search's found loss reads an experiment, which presets never do: tests/search/test_export.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taylorglo.presets import Preset, get_preset
from taylorglo.presets.cli import main as cli_main
from taylorglo.presets.export import distribution_name, export_package, module_name, preset_from_vector

from .preset_helpers import REPO, run_python

# Digits of pi: an order-3 vector no other test uses, with full float precision.
VECTOR = [0.31415926535, -2.7182818284, 1.4142135623, 0.5772156649, -1.6180339887, 0.6931471805, 0.25, 0.75]


def test_names_of_the_generated_distribution_and_module():
    assert distribution_name("cifar10.all_cnn-c") == "taylorglo-preset-cifar10-all-cnn-c"
    assert module_name("cifar10.all_cnn-c") == "taylorglo_preset_cifar10_all_cnn_c"
    with pytest.raises(ValueError, match="not valid"):
        distribution_name("Bad Name")


def test_export_from_a_bare_vector_or_a_preset(tmp_path):
    out = export_package(VECTOR, tmp_path / "v", name="pi-loss", plot=False, description="digits of pi")
    doc = json.loads((out / "src/taylorglo_preset_pi_loss/preset.json").read_text())
    assert doc["params"] == VECTOR and doc["provenance"] == {"kind": "manual"} and doc["results"] is None
    assert "Not measured" in (out / "README.md").read_text()
    out = export_package(get_preset("ce-taylor-3"), tmp_path / "p", name="my-ce", plot=False)
    assert json.loads((out / "src/taylorglo_preset_my_ce/preset.json").read_text())["name"] == "my-ce"
    with pytest.raises(ValueError, match="needs name="):
        export_package(VECTOR, tmp_path / "w")
    with pytest.raises(ValueError, match="cannot have 7 numbers"):
        preset_from_vector(VECTOR[:7], "short")


@pytest.mark.slow
def test_the_exported_package_installs_with_pip_and_gives_the_same_loss(tmp_path):
    preset = preset_from_vector(VECTOR, "pi-loss", description="installed by pip")
    pkg = export_package(preset, tmp_path / "pkg", plot=False)
    target = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(pkg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "taylorglo_preset_pi_loss" / "preset.json").is_file()
    out = run_python(
        f"""
import json, warnings
import torch
from taylorglo import TaylorLoss
from taylorglo.presets import get_preset, list_presets
warnings.simplefilter("error")  # no plugin warnings either
torch.manual_seed(0)
logits = torch.randn(16, 7, dtype=torch.float64)
target = torch.randint(0, 7, (16,))
a = TaylorLoss.from_preset("pi-loss", reduction="none")(logits, target)
b = TaylorLoss({VECTOR!r}, reduction="none")(logits, target)
print(json.dumps({{
    "names": list_presets(),
    "source": get_preset("pi-loss").source,
    "params": list(get_preset("pi-loss").params),
    "equal": bool(torch.equal(a, b)),
}}))
""",
        target,
    )
    assert "pi-loss" in out["names"] and "ce-taylor-3" in out["names"]
    assert "distribution taylorglo-preset-pi-loss 0.1.0" in out["source"]
    assert out["params"] == VECTOR
    assert out["equal"] is True


def test_the_command_line_lists_shows_and_exports(tmp_path, capsys, fresh_registry):
    assert cli_main(["list", "ce-*"]) == 0
    assert capsys.readouterr().out.split() == [f"ce-taylor-{k}" for k in range(2, 7)]
    assert cli_main(["show", "original-mnist"]) == 0
    shown = capsys.readouterr().out
    assert "original rule" not in shown and "original violates" in shown and "gradient passes" in shown
    assert cli_main(["show", "ce-taylor-2", "--json"]) == 0
    assert Preset.from_json(capsys.readouterr().out) == get_preset("ce-taylor-2")
    assert cli_main(["show", "nope"]) == 2
    assert "no preset named 'nope'" in capsys.readouterr().err
    vec = ",".join(repr(v) for v in VECTOR)
    assert (
        cli_main(["export", "--vector", vec, "--name", "cli-loss", "--out", str(tmp_path / "c"), "--no-plot"])
        == 0
    )
    assert "pip install" in capsys.readouterr().out
    doc = json.loads((tmp_path / "c/src/taylorglo_preset_cli_loss/preset.json").read_text())
    assert doc["params"] == VECTOR
    assert cli_main(["export", "--vector", vec]) == 2
    assert "--vector needs --name" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "missing"), "--name", "x"]) == 2  # the search exports DIRs
    assert "python -m taylorglo.search export" in capsys.readouterr().err
    assert cli_main(["export", "--vector", vec, "--preset", "ce-taylor-3", "--name", "x"]) == 2
    assert "exactly one of --vector or --preset" in capsys.readouterr().err
    with pytest.raises(TypeError, match="taylorglo.search export"):
        export_package(str(tmp_path), tmp_path / "o", name="x")


@pytest.mark.slow
def test_python_dash_m_runs_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "taylorglo.presets", "list", "original-*"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**__import__("os").environ, "TAYLORGLO_DISABLE_PLUGINS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["original-mnist", "original-older-search"]


def test_export_without_matplotlib_announces_the_skipped_plot_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = export_package(VECTOR, tmp_path / "v", name="pi-loss")
    assert not (out / "loss_shape.png").exists() and "loss_shape.png" not in (out / "README.md").read_text()
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{out / 'loss_shape.png'} skipped: matplotlib is not installed (pip install matplotlib)"]
    export_package(VECTOR, tmp_path / "w", name="pi-loss", plot=False)  # not asked for: nothing to say
    assert capsys.readouterr().err == ""
