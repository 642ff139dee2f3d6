"""Export from a search: an experiment's found loss becomes a preset and a pip-installable package
(``taylorglo.search.export``; the package writer is ``taylorglo.presets.export``, tested there)."""

from __future__ import annotations

import json
import sys

import pytest

from taylorglo.presets import Preset
from taylorglo.search.__main__ import main
from taylorglo.search.export import export_experiment, preset_from_experiment
from taylorglo.search.journal import ExperimentDir

SYNTHETIC = "taylorglo.search.synthetic:evaluate"


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
    # cross-entropy, so the records are appended here, through the files' owner).
    exp = ExperimentDir(d)
    for seed, acc in zip(seeds, (0.93, 0.95, 0.94)):
        exp.append_evaluation_set(
            "chosen", {"seed": seed, "spec": {"vector": best}, "status": "ok", "test_accuracy": acc}
        )
    exp.append_evaluation_set(
        "chosen", {"seed": 99, "spec": {"vector": best}, "status": "failed", "test_accuracy": None}
    )
    for seed, acc in zip(seeds, (0.90, 0.91, 0.89)):
        exp.append_evaluation_set(
            "cross-entropy",
            {"seed": seed, "spec": {"loss": "cross-entropy"}, "status": "ok", "test_accuracy": acc},
        )
    return d, result


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


def test_python_dash_m_taylorglo_search_export_writes_the_package(experiment, tmp_path, capsys):
    d, result = experiment
    argv = ["export", str(d), "--name", "from-search", "--out", str(tmp_path / "s"), "--no-plot"]
    assert main(argv) == 0
    assert "pip install" in capsys.readouterr().out
    doc = json.loads((tmp_path / "s/src/taylorglo_preset_from_search/preset.json").read_text())
    assert doc["params"] == result.best["vector"] and doc["provenance"]["kind"] == "search"
    assert main(argv) == 2  # the folder is not empty now
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(d)])  # --name is required there
    assert main(["export", str(tmp_path / "missing"), "--name", "x"]) == 2
    assert "not an experiment directory" in capsys.readouterr().err
