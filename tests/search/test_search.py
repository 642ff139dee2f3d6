"""The search loop with the synthetic evaluator: convergence, limits, failures, invariant, spaces."""

from __future__ import annotations

import math
import threading

import pytest
from conftest import journal_without_timing, synthetic_config

from taylorglo.search.journal import ExperimentDir, ExperimentLocked
from taylorglo.search.runner import generation_seed, run_search
from taylorglo.search.strategy import CMAStrategy


def test_search_improves_fitness_and_stops_at_the_generation_limit(tmp_path):
    cfg = synthetic_config(search={"generations": 12, "population_size": 8})
    result = run_search(tmp_path / "e", cfg, log=None)
    assert result.complete and result.generations == 12 and result.evaluations == 96
    recs = journal_without_timing(tmp_path / "e")
    first = min(r["fitness"] for r in recs if r["generation"] == 0)
    assert result.best["fitness"] < 0.5 * first
    # running again does nothing more: the limit is enforced
    again = run_search(tmp_path / "e", log=None)
    assert again.generations == 12 and again.evaluations == 96


def test_budget_stops_before_a_generation_that_does_not_fit(tmp_path):
    cfg = synthetic_config(search={"generations": 50, "population_size": 6, "max_evaluations": 20})
    result = run_search(tmp_path / "e", cfg, log=None)
    assert result.evaluations == 18 and result.generations == 3
    assert "budget" in result.stop_reason and result.complete


def test_generations_share_a_seed_that_changes_between_generations(tmp_path):
    run_search(tmp_path / "e", synthetic_config(), log=None)
    recs = journal_without_timing(tmp_path / "e")
    for g in range(4):
        seeds = {r["seed"] for r in recs if r["generation"] == g}
        assert seeds == {generation_seed(7, g)}
    assert len({generation_seed(7, g) for g in range(4)}) == 4


def test_same_seed_gives_the_same_search(tmp_path):
    run_search(tmp_path / "a", synthetic_config(), log=None)
    run_search(tmp_path / "b", synthetic_config(), log=None)
    assert journal_without_timing(tmp_path / "a") == journal_without_timing(tmp_path / "b")
    other = synthetic_config(search={"seed": 8})
    run_search(tmp_path / "c", other, log=None)
    assert journal_without_timing(tmp_path / "a") != journal_without_timing(tmp_path / "c")


def test_failures_get_the_penalty_with_their_status_and_the_search_goes_on(tmp_path):
    cfg = synthetic_config(
        search={"penalty": 0.97, "retries": 2, "generations": 3, "invariant_action": "off"},
        execution={"evaluator_options": {"raise_on": [1], "diverge_on": [2]}},
    )
    result = run_search(tmp_path / "e", cfg, log=None)
    assert result.complete and result.generations == 3
    recs = journal_without_timing(tmp_path / "e")
    for r in recs:
        assert math.isfinite(r["fitness"])
        if r["index"] == 1:
            assert r["status"] == "failed" and r["fitness"] == 0.97 and r["attempts"] == 3
            assert "synthetic failure" in r["error"]
        elif r["index"] == 2:
            assert r["status"] == "diverged" and r["fitness"] == 0.97 and r["attempts"] == 1
        else:
            assert r["status"] == "ok" and r["fitness"] == pytest.approx(1 - r["val_accuracy"])
    log = ExperimentDir(tmp_path / "e").log_path(0, 1).read_text()
    assert "RuntimeError: synthetic failure of candidate 1" in log


def test_a_generation_where_everything_fails_does_not_end_the_search(tmp_path):
    cfg = synthetic_config(
        search={"generations": 3, "retries": 0, "invariant_action": "off"},
        execution={"evaluator_options": {"raise_on": list(range(6))}},
    )
    result = run_search(tmp_path / "e", cfg, log=None)
    assert result.complete and result.generations == 3 and result.evaluations == 18
    assert all(
        r["status"] == "failed" and r["fitness"] == 1.0 for r in journal_without_timing(tmp_path / "e")
    )


@pytest.mark.parametrize("action", ["enforce", "tag", "off"])
def test_invariant_actions(tmp_path, action):
    cfg = synthetic_config(
        search={"invariant_action": action, "generations": 2, "sigma": 3.0, "space": "original"}
    )
    run_search(tmp_path / "e", cfg, log=None)
    recs = journal_without_timing(tmp_path / "e")
    violators = [r for r in recs if r["violates_invariant"]]
    if action == "off":
        assert all(r["violates_invariant"] is None for r in recs)
        assert all(r["status"] == "ok" for r in recs)
        return
    assert violators, "sigma 3 around zeros should produce some violators"
    for r in violators:
        if action == "enforce":
            assert r["status"] == "invariant" and r["fitness"] == 1.0 and r["attempts"] == 0
        else:
            assert r["status"] == "ok" and r["fitness"] < 1.0


def test_canonical_space_stores_original_layout_and_reaches_lower_fitness(tmp_path):
    from taylorglo.polynomial import canonical_coordinates, canonical_dimension, parameter_count

    best = {}
    for space in ("canonical", "original"):
        cfg = synthetic_config(search={"space": space, "generations": 10, "population_size": 8, "seed": 3})
        res = run_search(tmp_path / space, cfg, log=None)
        best[space] = res.best["fitness"]
        pop, _ = ExperimentDir(tmp_path / space).read_population(0)
        for cand in pop["candidates"]:
            assert len(cand["vector"]) == parameter_count(3)
            if space == "canonical":
                assert len(cand["coords"]) == canonical_dimension(3, ("x", "y"), "hard") == 4
                back = canonical_coordinates(cand["vector"], 3, ("x", "y"), labels="hard")
                assert back == pytest.approx(cand["coords"], abs=1e-9)
    assert best["canonical"] <= best["original"]


def test_cross_entropy_start_point(tmp_path):
    cfg = synthetic_config(search={"start": "cross-entropy", "generations": 1})
    run_search(tmp_path / "e", cfg, log=None)
    st = CMAStrategy.loads(
        ExperimentDir(tmp_path / "e").generation_dir(0).joinpath("strategy.pkl").read_bytes()
    )
    assert any(abs(m) > 0.1 for m in st.mean)


def test_a_second_runner_on_the_same_directory_is_refused(tmp_path):
    exp = ExperimentDir(tmp_path / "e")
    exp.acquire_lock()
    try:
        with pytest.raises(ExperimentLocked, match=r"in use by pid \d+"):
            run_search(tmp_path / "e", synthetic_config(), log=None)
        # the refusal comes from another thread of this process too: flock is per open file
        errors = []
        t = threading.Thread(target=lambda: errors.append(_try_lock(tmp_path / "e")))
        t.start()
        t.join()
        assert errors == ["locked"]
    finally:
        exp.release_lock()
    run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)


def _try_lock(path) -> str:
    try:
        ExperimentDir(path).acquire_lock()
    except ExperimentLocked:
        return "locked"
    return "acquired"


def test_a_stale_lock_file_from_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "lock").write_text("pid 999999 on somewhere\n")
    result = run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)
    assert result.generations == 1


def test_a_different_experiment_in_the_same_directory_is_refused(tmp_path):
    from taylorglo.search.config import ConfigError

    run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)
    with pytest.raises(ConfigError, match="search.order"):
        run_search(tmp_path / "e", synthetic_config(search={"order": 4}), log=None)
    # extending the generation limit is allowed
    res = run_search(tmp_path / "e", synthetic_config(search={"generations": 2}), log=None)
    assert res.generations == 2


def test_torn_journal_line_is_cut_and_the_candidate_reevaluated(tmp_path):
    cfg = synthetic_config(search={"generations": 1})
    run_search(tmp_path / "e", cfg, log=None)
    reference = journal_without_timing(tmp_path / "e")
    exp = ExperimentDir(tmp_path / "e")
    lines = exp.journal_path.read_bytes().splitlines(keepends=True)
    exp.journal_path.write_bytes(lines[0] + lines[1][:25])  # a kill in the middle of the second append
    exp.state_path.unlink()  # ... so generation 0 was never told
    run_search(tmp_path / "e", log=None)
    assert journal_without_timing(tmp_path / "e") == reference
