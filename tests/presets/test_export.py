"""Export: a found loss becomes a package that a real ``pip install`` makes visible to taylorglo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from preset_helpers import REPO, run_python

from taylorglo.presets import Preset, get_preset
from taylorglo.presets.cli import main as cli_main
from taylorglo.presets.export import (
    distribution_name,
    export_experiment,
    export_package,
    module_name,
    preset_from_experiment,
    preset_from_vector,
)

SYNTHETIC = "taylorglo.search.synthetic:evaluate"
# Digits of pi: an order-3 vector no other test uses, with full float precision.
VECTOR = [0.31415926535, -2.7182818284, 1.4142135623, 0.5772156649, -1.6180339887, 0.6931471805, 0.25, 0.75]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A finished 3-generation synthetic search plus one-shot evaluations of its best and of CE."""
    from taylorglo.search import run_search
    from taylorglo.search.analysis import evaluation_seeds

    d = tmp_path_factory.mktemp("exp") / "exp"
    cfg = {
        "task": {"dataset": "digits", "epochs": 3},
        "search": {"order": 3, "population_size": 6, "generations": 3, "seed": 7, "final_top_k": 0},
        "execution": {"backend": "inline", "evaluator": SYNTHETIC, "evaluator_options": {}},
    }
    result = run_search(d, cfg, progress=False, log=None)
    seeds = evaluation_seeds(d, 3)
    best = result.best["vector"]
    # What `python -m taylorglo.search evaluate` writes (the synthetic evaluator cannot train
    # cross-entropy, so the records are written here, in the same format).
    (d / "evaluations").mkdir()
    with open(d / "evaluations" / "chosen.jsonl", "w") as fh:
        for seed, acc in zip(seeds, (0.93, 0.95, 0.94)):
            fh.write(
                json.dumps({"seed": seed, "spec": {"vector": best}, "status": "ok", "test_accuracy": acc})
                + "\n"
            )
        fh.write(
            json.dumps({"seed": 99, "spec": {"vector": best}, "status": "failed", "test_accuracy": None})
            + "\n"
        )
    with open(d / "evaluations" / "cross-entropy.jsonl", "w") as fh:
        for seed, acc in zip(seeds, (0.90, 0.91, 0.89)):
            rec = {"seed": seed, "spec": {"loss": "cross-entropy"}, "status": "ok", "test_accuracy": acc}
            fh.write(json.dumps(rec) + "\n")
    return d, result


def test_names_of_the_generated_distribution_and_module():
    assert distribution_name("cifar10.all_cnn-c") == "taylorglo-preset-cifar10-all-cnn-c"
    assert module_name("cifar10.all_cnn-c") == "taylorglo_preset_cifar10_all_cnn_c"
    with pytest.raises(ValueError, match="not valid"):
        distribution_name("Bad Name")


def test_a_preset_from_the_best_candidate_records_where_it_was_found_and_its_results(experiment):
    d, result = experiment
    p = preset_from_experiment(d, "digits-best")
    assert list(p.params) == result.best["vector"]
    prov = p.provenance
    assert prov["kind"] == "search" and prov["dataset"] == "digits" and prov["model"] == "taylorglo_smallcnn"
    assert prov["generations"] == 3 and prov["evaluations"] == 18
    assert prov["training_budget"]["epochs"] == 3
    assert prov["search_config"]["search"]["population_size"] == 6
    assert prov["candidate"]["generation"] == result.best["generation"]
    assert prov["candidate"]["index"] == result.best["index"]
    res = p.results
    assert res["metric"] == "test_accuracy"
    assert res["preset"]["n"] == 3 and res["preset"]["mean"] == pytest.approx(0.94)
    assert res["preset"]["std"] == pytest.approx(0.01)
    assert res["cross_entropy"]["n"] == 3 and res["cross_entropy"]["mean"] == pytest.approx(0.90)
    assert 0 < res["p_value"] < 0.05 and res["test"].startswith("welch")
    assert p.date is not None and p.versions["taylorglo"]
    assert p.invariant["num_classes"] == 10


def test_a_preset_from_the_cma_mean_has_no_invented_results(experiment):
    d, _ = experiment
    from taylorglo.search.space import SearchSpace
    from taylorglo.search.strategy import CMAStrategy

    p = preset_from_experiment(d, "digits-mean", candidate="mean")
    mean = CMAStrategy.loads((d / "state.pkl").read_bytes()).mean
    assert list(p.params) == SearchSpace(3, ("x", "y"), "canonical").to_vector(mean)
    assert p.provenance["candidate"]["selection"].startswith("CMA-ES mean")
    assert p.results is None
    assert any("measured results" in u for u in p.provenance["unknown"])
    with pytest.raises(ValueError, match="'best' or 'mean'"):
        preset_from_experiment(d, "x", candidate="median")
    with pytest.raises(FileNotFoundError, match="not an experiment directory"):
        preset_from_experiment(d / "nope", "x")


def test_export_writes_a_complete_package(experiment, tmp_path):
    d, _ = experiment
    out = export_experiment(d, "digits-best", tmp_path / "pkg")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = [
        "README.md",
        "pyproject.toml",
        "src/taylorglo_preset_digits_best/__init__.py",
        "src/taylorglo_preset_digits_best/preset.json",
    ]
    assert [f for f in files if f != "loss_shape.png"] == expected
    shipped = Preset.from_json((out / "src/taylorglo_preset_digits_best/preset.json").read_text())
    assert shipped == preset_from_experiment(d, "digits-best")
    readme = (out / "README.md").read_text()
    assert shipped.formula("text") in readme and shipped.formula("latex") in readme
    assert "| digits-best | 0.9400 ± 0.0100 (n = 3) |" in readme
    assert "| cross-entropy (same protocol) | 0.9000 ± 0.0100 (n = 3) |" in readme
    assert 'TaylorLoss.from_preset("digits-best")' in readme
    pyproject = (out / "pyproject.toml").read_text()
    assert '[project.entry-points."taylorglo.presets"]' in pyproject
    assert '"digits-best" = "taylorglo_preset_digits_best:preset.json"' in pyproject
    if sys.version_info >= (3, 11):
        import tomllib

        tomllib.loads(pyproject)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "loss_shape.png" not in files
    else:
        assert (out / "loss_shape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![loss shape](loss_shape.png)" in readme
    with pytest.raises(FileExistsError, match="not empty"):
        export_experiment(d, "digits-best", out)
    export_experiment(d, "digits-best", out, overwrite=True, plot=False)


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
from taylorglo.presets import from_preset, get_preset, list_presets
warnings.simplefilter("error")  # no plugin warnings either
torch.manual_seed(0)
logits = torch.randn(16, 7, dtype=torch.float64)
target = torch.randint(0, 7, (16,))
a = from_preset("pi-loss", reduction="none")(logits, target)
b = TaylorLoss({VECTOR!r}, reduction="none")(logits, target)
classmethod_ok = None
if hasattr(TaylorLoss, "from_preset"):
    classmethod_ok = bool(torch.equal(TaylorLoss.from_preset("pi-loss", reduction="none")(logits, target), b))
print(json.dumps({{
    "names": list_presets(),
    "source": get_preset("pi-loss").source,
    "params": list(get_preset("pi-loss").params),
    "equal": bool(torch.equal(a, b)),
    "classmethod": classmethod_ok,
}}))
""",
        target,
    )
    assert "pi-loss" in out["names"] and "ce-taylor-3" in out["names"]
    assert "distribution taylorglo-preset-pi-loss 0.1.0" in out["source"]
    assert out["params"] == VECTOR
    assert out["equal"] is True
    assert out["classmethod"] in (None, True)


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
    assert cli_main(["export", str(tmp_path / "missing"), "--name", "x"]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


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


def test_the_export_arguments_plug_into_another_command_line(experiment, tmp_path, capsys):
    # What `python -m taylorglo.search export DIR --name NAME [--out PATH]` does with these helpers.
    import argparse

    from taylorglo.presets.cli import add_export_arguments, cmd_export

    parser = argparse.ArgumentParser(prog="python -m taylorglo.search")
    sub = parser.add_subparsers(dest="command")
    x = sub.add_parser("export")
    add_export_arguments(x, dir_required=True)
    x.set_defaults(func=cmd_export)
    d, result = experiment
    args = parser.parse_args(
        ["export", str(d), "--name", "from-search", "--out", str(tmp_path / "s"), "--no-plot"]
    )
    assert args.func(args) == 0
    doc = json.loads((tmp_path / "s/src/taylorglo_preset_from_search/preset.json").read_text())
    assert doc["params"] == result.best["vector"] and doc["provenance"]["kind"] == "search"
    assert args.func(args) == 2  # the folder is not empty now
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(d)])  # --name is required there


def test_export_without_matplotlib_announces_the_skipped_plot_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = export_package(VECTOR, tmp_path / "v", name="pi-loss")
    assert not (out / "loss_shape.png").exists() and "loss_shape.png" not in (out / "README.md").read_text()
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{out / 'loss_shape.png'} skipped: matplotlib is not installed (pip install matplotlib)"]
    export_package(VECTOR, tmp_path / "w", name="pi-loss", plot=False)  # not asked for: nothing to say
    assert capsys.readouterr().err == ""
