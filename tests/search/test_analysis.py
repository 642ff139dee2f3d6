"""Reading an experiment (``analysis``): the work of ``status``, ``analyze``, ``ttest`` and
``invocation``, called directly (the CLI only prints it), and the one-shot evaluations' cache."""

from __future__ import annotations

import shutil

import pytest

from taylorglo.search.analysis import (
    analyze,
    best_record,
    evaluate_losses,
    invocation,
    status_lines,
    ttest_lines,
)
from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search

from .conftest import synthetic_config


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis") / "exp"
    cfg = synthetic_config(
        search={"population_size": 4, "generations": 3},
        execution={"evaluator_options": {"noise": 0.02}},
    )
    run_search(d, cfg, log=None)
    return d


def test_analyze_one_experiment_writes_its_table_and_describes_it(experiment, tmp_path):
    d = tmp_path / "exp"
    shutil.copytree(experiment, d)
    report = analyze([d], top=2, plots=False)
    exp = ExperimentDir(d)
    assert [e.path for e in report["experiments"]] == [d]
    assert exp.artifact_path("generations.csv").read_text().splitlines()[0].startswith("generation,")
    (row,) = report["summary"]
    assert row["generations"] == 3 and row["evaluations"] == 12 and row["complete"] is True
    text = "\n".join(report["lines"])
    best = best_record(d)
    assert "best candidates:" in text and f"{best['vector'][0]:.6g}" in text and "f(x, y) = " in text
    assert row["best_fitness"] == best["fitness"]
    assert "baselines not tuned yet" in text


def test_analyze_a_folder_of_experiments_writes_a_summary_and_refuses_what_is_none(experiment, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(experiment, tmp_path / "runs" / name)
    (tmp_path / "runs" / "not-an-experiment").mkdir()
    report = analyze([tmp_path / "runs"], plots=False)
    assert [r["experiment"] for r in report["summary"]] == [str(tmp_path / "runs" / n) for n in ("a", "b")]
    assert (tmp_path / "runs" / "summary.csv").read_text().count("\n") == 3
    with pytest.raises(ValueError, match="not an experiment directory or a folder of them"):
        analyze([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no experiment directories found"):
        analyze([tmp_path / "runs" / "not-an-experiment"])


def test_status_lines_say_where_the_experiment_stands(experiment):
    lines, complete = status_lines(experiment, failures=3)
    assert complete and lines[0] == f"{experiment}: complete; 3/3 generations done"
    assert lines[1].startswith("evaluations: 12, failed or penalized: ")
    # the last failures (here: invariant violators, penalized without training), at most 3
    shown = [line for line in lines if line.startswith("- generation ")]
    assert 0 < len(shown) <= 3 and all("invariant" in line for line in shown)
    assert any(line.startswith("integrity: records OK: journal.jsonl 12") for line in lines)


def test_one_shot_evaluations_are_cached_in_the_directory_and_compared(experiment, tmp_path):
    d = tmp_path / "exp"
    shutil.copytree(experiment, d)
    arms = {"chosen": {"vector": best_record(d)["vector"]}, "cross-entropy": {"loss": "cross-entropy"}}
    first = evaluate_losses(d, arms, [1, 2, 3], evaluate_test=False, log=None)
    assert [r["seed"] for r in first["chosen"]] == [1, 2, 3] and first["chosen"][0]["status"] == "ok"
    exp = ExperimentDir(d)
    assert exp.evaluation_names() == ["chosen", "cross-entropy"]

    class NoTraining:
        def submit(self, job):
            raise AssertionError(f"trained again: {job}")

    again = evaluate_losses(d, arms, [3, 1], evaluate_test=False, backend=NoTraining(), log=None)
    assert again["chosen"] == [first["chosen"][2], first["chosen"][0]]
    lines = ttest_lines(d, exp.evaluation_path("cross-entropy"), metric="val_accuracy")
    assert (
        lines[0].startswith("val_accuracy: A ") and "(n=3)" in lines[0] and lines[1].startswith("Welch t = ")
    )
    with pytest.raises(ValueError, match="no tuned baselines"):
        ttest_lines(d)
    with pytest.raises(FileNotFoundError, match="no evaluations"):
        ttest_lines(experiment, d)


def test_invocation_is_the_standalone_training_command_of_a_candidate(experiment):
    command = invocation(experiment, 1, 2)
    assert command.startswith("python -m taylorglo.train --config-json ") and " --loss params:" in command
    with pytest.raises(ValueError, match="has no generation 7"):
        invocation(experiment, 7, 0)
    with pytest.raises(ValueError, match="candidates 0..3, not 9"):
        invocation(experiment, 0, 9)
