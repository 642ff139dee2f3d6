"""Experiment config: validation names the field, overrides, TOML/JSON, CLI exit code 2."""

from __future__ import annotations

import json

import pytest

from taylorglo.search.__main__ import main
from taylorglo.search.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    default_experiment,
    load_config,
    parse_override,
)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"search": {"population_size": 1}}, "search.population_size"),
        ({"search": {"sigma": -1.0}}, "search.sigma"),
        ({"search": {"order": "3"}}, "search.order"),
        ({"search": {"start": "ones"}}, "search.start"),
        ({"search": {"start": "loss:gce:q=2"}}, "search.start"),
        ({"search": {"start": "loss:preset:no-such-preset"}}, "search.start"),
        ({"search": {"start": 3}}, "search.start"),
        ({"search": {"start_lr": -0.1, "learning_rate": "searched"}}, "search.start_lr"),
        (
            {"search": {"start_lr": 0.4}},
            "search.start_lr = 0.4 is invalid: expected 0 with search.learning_rate",
        ),
        ({"search": {"space": "weird"}}, "search.space"),
        ({"search": {"invariant_action": "ignore"}}, "search.invariant_action"),
        ({"search": {"max_missing": 8, "population_size": 8}}, "search.max_missing"),
        ({"search": {"max_evaluations": 3}}, "search.max_evaluations"),
        ({"search": {"popsize": 8}}, "search.popsize"),
        ({"execution": {"backend": "slurm"}}, "execution.backend"),
        ({"execution": {"workers": -1}}, "execution.workers"),
        ({"searhc": {}}, "searhc"),
    ],
)
def test_invalid_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(data, validate_task=False)
    assert field in str(err.value)


@pytest.mark.parametrize(
    "section, hint",
    [("searhc", "did you mean [search]? "), ("executoin", "did you mean [execution]? "), ("zzz", "")],
)
def test_an_unknown_section_suggests_the_closest_one(section, hint):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({section: {}}, validate_task=False)
    assert str(err.value) == (
        f"unknown section {section!r}: {hint}the sections are 'task', 'search', 'execution'"
    )


def test_unknown_task_key_is_reported_by_the_trainer_config():
    pytest.importorskip("taylorglo.train")
    with pytest.raises(ConfigError, match="task.*epochz"):
        ExperimentConfig.from_dict({"task": {"epochz": 3}})


def test_ints_are_accepted_for_floats_and_round_trip():
    cfg = ExperimentConfig.from_dict({"search": {"sigma": 2}}, validate_task=False)
    assert cfg.search.sigma == 2.0 and isinstance(cfg.search.sigma, float)
    again = ExperimentConfig.from_dict(cfg.to_dict(), validate_task=False)
    assert again == cfg


def test_default_experiment_is_valid():
    cfg = ExperimentConfig.from_dict(default_experiment())
    assert cfg.task["dataset"] == "digits"


def test_overrides_parse_json_values_and_bare_strings():
    assert parse_override("search.population_size=16") == (["search", "population_size"], 16)
    assert parse_override("task.dataset=mnist-5k") == (["task", "dataset"], "mnist-5k")
    assert parse_override('search.variables=["x","y"]') == (["search", "variables"], ["x", "y"])
    data = apply_overrides({"search": {"seed": 1}}, ["search.seed=5", "execution.backend=ray"])
    assert data == {"search": {"seed": 5}, "execution": {"backend": "ray"}}
    with pytest.raises(ConfigError, match="section"):
        parse_override("seed=5")


def test_toml_and_json_files_load_the_same(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[task]\ndataset = "digits"\n[search]\npopulation_size = 10\nsigma = 1.2\n')
    js = tmp_path / "exp.json"
    js.write_text(
        json.dumps({"task": {"dataset": "digits"}, "search": {"population_size": 10, "sigma": 1.2}})
    )
    a = load_config(toml, validate_task=False)
    b = load_config(js, validate_task=False)
    assert a == b and a.search.population_size == 10
    c = load_config(toml, ["search.population_size=12"], validate_task=False)
    assert c.search.population_size == 12


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[search]\npopulation_size = 1\n")
    assert main(["run", str(bad), "--dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.population_size" in err[0]
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    bad.write_text("[search\n")
    assert main(["run", str(bad)]) == 2


# --- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "search, field",
    [
        ({"seeds_per_candidate": 0}, "search.seeds_per_candidate"),
        ({"fitness": "median"}, "search.fitness"),
        ({"learning_rate": "tuned"}, "search.learning_rate"),
        ({"lr_bounds": [0.5, 0.1]}, "search.lr_bounds"),
        ({"lr_bounds": [0.1]}, "search.lr_bounds"),
        ({"final_seeds": 1}, "search.final_seeds"),
        ({"baseline_lrs": [-1.0]}, "search.baseline_lrs"),
        ({"baseline_label_smoothing": [1.5]}, "search.baseline_label_smoothing"),
        ({"normalization": "l2"}, "search.normalization"),
        ({"sigma": 1e308}, "search.sigma"),
        ({"order": 4, "invariant_rule": "original"}, "search.invariant_rule"),
        ({"variables": ["x", "y", "t"], "invariant_rule": "original"}, "search.invariant_rule"),
        ({"order": 2, "space": "normalized", "normalization": "push"}, "search.space"),
        ({"order": 1}, "search.space"),
    ],
)
def test_invalid_robust_search_settings_name_the_field(search, field):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({"search": search}, validate_task=False)
    assert field in str(err.value)


def test_a_typo_in_search_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean search.seeds_per_candidate"):
        ExperimentConfig.from_dict({"search": {"seeds_per_candiate": 2}}, validate_task=False)
