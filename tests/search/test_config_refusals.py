"""`init` and `run` refuse what cannot run or be stored, with exit 2 and one line naming the field,
before anything is written: a task the trainer cannot build, non-finite and absurd numbers."""

from __future__ import annotations

import json

import pytest

from taylorglo.search.__main__ import main
from taylorglo.search.config import ConfigError, ExperimentConfig
from taylorglo.search.runner import run_search

from .conftest import synthetic_config


def _trainer_config(**task) -> dict:
    """A real-trainer experiment (the default evaluator) on digits, the in-process backend."""
    return {
        "task": {"dataset": "digits", "model": "taylorglo_smallcnn", "epochs": 1, **task},
        "search": {"population_size": 2, "generations": 1, "final_top_k": 0},
        "execution": {"backend": "inline"},
    }


def _refused(tmp_path, capsys, config: dict, command: str = "run") -> str:
    """Run the CLI on ``config``: assert exit 2, one line on stderr, nothing written; return the line."""
    cfg = tmp_path / "exp.json"
    cfg.write_text(json.dumps(config))
    d = tmp_path / "d"
    argv = (
        ["run", str(cfg), "--dir", str(d), "--no-progress"]
        if command == "run"
        else ["init", str(d), "--config", str(cfg)]
    )
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not d.exists(), sorted(p.name for p in d.iterdir())
    return err[0]


@pytest.mark.parametrize(
    "task, field, words",
    [
        ({"model": "resnet_nope_999"}, "task.model", "unknown model"),
        ({"model": "vit_tiny_patch16_224"}, "task.model", "does not take task.dataset = 'digits''s input"),
        ({"model_kwargs": {"bogus": 1}}, "task.model_kwargs", "bogus"),
        ({"dataset": "digits_nope_999"}, "task.dataset", "unknown dataset"),
        (
            {"dataset": "mnist", "download": False, "data_root": "{tmp}/no-data"},
            "task.dataset",
            "not available",
        ),
        ({"lr": float("inf")}, "task.lr", "finite"),
    ],
)
@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize("command", ["run", "init"])
def test_a_task_the_trainer_cannot_build_is_refused_before_anything_is_written(
    tmp_path, capsys, task, field, words, command
):
    task = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in task.items()}
    line = _refused(tmp_path, capsys, _trainer_config(**task), command)
    assert field in line and words in line, line
    assert not (tmp_path / "no-data").exists()  # the failed download attempt cleaned up after itself


def test_an_unknown_dataset_is_named_as_such_not_as_a_missing_class_count():
    with pytest.raises(ConfigError, match="task.dataset: unknown dataset 'nope'"):
        ExperimentConfig.from_dict({"task": {"dataset": "nope"}, "search": {"invariant_action": "enforce"}})


def test_a_class_count_other_than_the_datasets_is_refused():
    cfg = ExperimentConfig.from_dict(dict(_trainer_config(), search={"num_classes": 5}))
    with pytest.raises(ConfigError, match="search.num_classes = 5 .* 'digits' has 10 classes"):
        cfg.check_task()


@pytest.mark.parametrize(
    "section, values, field",
    [
        ("search", {"sigma": 1e308}, "search.sigma"),
        ("search", {"penalty": 1e308}, "search.penalty"),
        ("search", {"penalty": -1.0}, "search.penalty"),
        ("execution", {"evaluator_options": {"sleep": float("nan")}}, "execution.evaluator_options.sleep"),
        ("task", {"lr": float("-inf")}, "task.lr"),
    ],
)
def test_numbers_that_cannot_be_stored_or_break_the_search_are_refused(
    tmp_path, capsys, section, values, field
):
    line = _refused(tmp_path, capsys, synthetic_config(**{section: values}))
    assert field in line, line


def test_a_synthetic_evaluator_skips_the_task_check(tmp_path):
    cfg = synthetic_config(task={"model": "resnet_nope_999"}, search={"generations": 1})
    assert run_search(tmp_path / "e", cfg, log=None).complete


def test_resuming_a_directory_checks_its_task_again(tmp_path, capsys):
    d = tmp_path / "d"
    assert main(["init", str(d), "--config", str(_write(tmp_path, _trainer_config()))]) == 0
    stored = json.loads((d / "config.json").read_text())
    stored["task"]["model"] = "resnet_nope_999"  # e.g. written by another version, or edited by hand
    (d / "config.json").write_text(json.dumps(stored))
    capsys.readouterr()
    assert main(["run", str(d), "--no-progress"]) == 2
    assert "task.model" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["config.json"]  # no lock, no generation


def _write(tmp_path, config: dict):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(config))
    return path


def test_a_new_experiment_that_fails_before_its_first_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    import taylorglo.search.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(runner, "_sample", broken)
    cfg = synthetic_config(search={"generations": 1})
    with pytest.raises(RuntimeError, match="sampling failed"):
        run_search(tmp_path / "new", cfg, log=None)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # a directory the user made: only what the run created goes
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(RuntimeError, match="sampling failed"):
        run_search(mine, cfg, log=None)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    assert run_search(mine, cfg, log=None).complete  # and it can start again
