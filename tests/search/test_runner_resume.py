"""Resume (``runner``): a search killed at any point and resumed equals an uninterrupted one, and
loses or repeats no training, with worker processes and with seeds per candidate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search

from .conftest import (
    journal_without_timing,
    robust_config,
    run_cli,
    strategy_fingerprint,
    subprocess_env,
    synthetic_config,
)

POP, GENS = 6, 4


def _config(marker_dir: Path, backend: str = "inline", sleep: float = 0.0) -> dict:
    return synthetic_config(
        search={"population_size": POP, "generations": GENS, "seed": 11},
        execution={
            "backend": backend,
            "workers": 2,
            "evaluator_options": {"marker_dir": str(marker_dir), "sleep": sleep},
        },
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    run_search(root / "exp", _config(root / "markers"), log=None)
    return journal_without_timing(root / "exp"), strategy_fingerprint(root / "exp")


def _trainings(marker_dir: Path) -> Counter:
    """How many times each (generation, index) finished training, over all processes."""
    count: Counter = Counter()
    for p in marker_dir.iterdir():
        g, c, _r, _a, _n = p.name.split("-")
        count[(int(g[1:]), int(c[1:]))] += 1
    return count


@pytest.mark.parametrize(
    "fault",
    [
        "after-journal:1:3",  # right after an evaluation is journaled, mid-generation
        # the other fault points run with the slow tests (pytest -m slow)
        pytest.param("before-tell:2", marks=pytest.mark.slow),  # generation 2 journaled, no tell yet
        pytest.param("replace:state.pkl@2", marks=pytest.mark.slow),  # during the checkpoint after gen 1
        pytest.param("replace:population.json@3", marks=pytest.mark.slow),  # storing generation 2
    ],
)
def test_kill_at_a_fault_point_then_resume_equals_an_uninterrupted_run(tmp_path, reference, fault):
    markers = tmp_path / "markers"
    exp = tmp_path / "exp"
    killed = run_cli(exp, _config(markers), fault=fault)
    assert killed.returncode == -9, killed.stderr
    before = {(r["generation"], r["index"]) for r in journal_without_timing(exp)}
    assert 0 < len(before) < POP * GENS
    resumed = run_cli(exp, None)
    assert resumed.returncode == 0, resumed.stderr
    assert journal_without_timing(exp) == reference[0]
    assert strategy_fingerprint(exp) == reference[1]
    # in-process evaluation: the kill never interrupts a training, so each candidate trained once
    trained = {(r["generation"], r["index"]) for r in reference[0] if r["status"] != "invariant"}
    assert _trainings(markers) == Counter(dict.fromkeys(trained, 1))


@pytest.mark.slow
def test_kill_9_during_training_with_worker_processes_then_resume(tmp_path, reference):
    markers = tmp_path / "markers"
    exp = tmp_path / "exp"
    cfg_path = tmp_path / "exp.json"
    cfg_path.write_text(json.dumps(_config(markers, backend="local", sleep=0.15)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "taylorglo.search", "run", str(cfg_path), "--dir", str(exp), "--no-progress"],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = exp / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once generation 1 is half evaluated
        if journal.exists() and journal.read_text().count("\n") >= POP + 3:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    before = {(r["generation"], r["index"]) for r in journal_without_timing(exp)}
    assert POP <= len(before) < POP * GENS
    time.sleep(1.5)  # orphaned workers notice the dead host and exit
    resumed = run_cli(exp, None)
    assert resumed.returncode == 0, resumed.stderr
    assert journal_without_timing(exp) == reference[0]
    assert strategy_fingerprint(exp) == reference[1]
    trained = _trainings(markers)
    for key in before:  # finished and journaled before the kill: never trained again
        assert trained[key] <= 1, key
    assert set(trained) == {(r["generation"], r["index"]) for r in reference[0] if r["status"] != "invariant"}


def _trainings_per_replica(marker_dir: Path) -> Counter:
    """How many times each (generation or 'final', candidate, replica) was trained."""
    count: Counter = Counter()
    for p in marker_dir.iterdir():
        g, c, r, _a, _n = p.name.split("-")
        count[(g, int(c[1:]), int(r[1:]))] += 1
    return count


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after-journal:1:2@2", "after-final@4", "before-tell:2"])
def test_kill_9_with_two_seeds_per_candidate_then_resume_loses_and_repeats_nothing(tmp_path, fault):
    def config(markers):
        cfg = robust_config(generations=3, final_top_k=2, final_seeds=3)
        cfg["execution"]["evaluator_options"]["marker_dir"] = str(markers)
        return cfg

    ref = tmp_path / "ref"
    run_search(ref, config(tmp_path / "ref-markers"), log=None)
    exp = tmp_path / "exp"
    killed = run_cli(exp, config(tmp_path / "markers"), fault=fault)
    assert killed.returncode == -9, killed.stderr
    resumed = run_cli(exp, None)
    assert resumed.returncode == 0, resumed.stderr
    assert journal_without_timing(exp) == journal_without_timing(ref)
    assert strategy_fingerprint(exp) == strategy_fingerprint(ref)
    a, b = ExperimentDir(exp).read_selection(), ExperimentDir(ref).read_selection()
    assert a["chosen"] == b["chosen"] and a["table"] == b["table"]
    trained = _trainings_per_replica(tmp_path / "markers")
    assert trained == _trainings_per_replica(
        tmp_path / "ref-markers"
    )  # the same trainings, each exactly once
    assert {n for key, n in trained.items() if key[0] != "final"} == {1}
