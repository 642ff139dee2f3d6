"""The robust search: seeds per candidate, the normalized space, a searched learning rate, the final
selection on fresh seeds, tuned baselines, and every polynomial the loss supports."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import journal_without_timing, run_cli, strategy_fingerprint, subprocess_env, synthetic_config

from taylorglo.polynomial import TaylorPolynomial, canonical_dimension, check_invariant, parameter_count
from taylorglo.search.baselines import run_baselines
from taylorglo.search.config import ConfigError, ExperimentConfig
from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import aggregate_candidates, generation_seeds, run_search
from taylorglo.search.space import SearchSpace, push_scale


# --- the normalized space ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "order, variables, n",
    [(3, ("x", "y"), 10), (4, ("x", "y"), 10), (3, ("x", "y", "t"), 10), (5, ("x", "y"), 100)],
)
def test_normalized_push_space_reproduces_cross_entropys_push_at_the_uniform_prediction(order, variables, n):
    space = SearchSpace(order, variables, "normalized", num_classes=n, normalization="push")
    assert space.dimension == canonical_dimension(order, variables) - 1
    rng = random.Random(order * 100 + n)
    for _ in range(20):
        coords = [rng.gauss(0, 3) for _ in range(space.dimension)]
        vector = space.to_vector(coords)
        poly = TaylorPolynomial(vector, order, variables)
        t = {"t": 0.0} if poly.has_progress else {}
        # D(1/n) = g(1, 1/n) - g(0, 1/n) = n, exactly cross-entropy's (g = x / y)
        d = poly.derivative_y(1.0, 1 / n, **t) - poly.derivative_y(0.0, 1 / n, **t)
        assert d == pytest.approx(n, rel=1e-9)
        assert push_scale(vector, order, variables, n) == pytest.approx(1.0, rel=1e-9)
        assert check_invariant(vector, n, "gradient", order=order, variables=variables, **t)
        assert space.to_coords(vector) == pytest.approx(coords, abs=1e-8)


def test_normalized_space_has_no_direction_that_only_rescales_the_loss():
    space = SearchSpace(3, ("x", "y"), "normalized", num_classes=10, normalization="push")
    ce = TaylorPolynomial.cross_entropy(3)
    start = space.start("cross-entropy")
    vec = space.to_vector(start)
    # doubling the loss doubles its push: no point of the space is twice another
    assert push_scale([2 * v for v in vec[:-2]] + vec[-2:], 3, ("x", "y"), 10) == pytest.approx(2.0)
    # the cross-entropy start is CE's expansion projected onto the constraint (same shape, its push fixed)
    assert push_scale(vec, 3, ("x", "y"), 10) == pytest.approx(1.0)
    assert push_scale(ce.vector, 3, ("x", "y"), 10) != pytest.approx(1.0)


def test_norm_normalization_makes_the_radial_direction_inert_and_matches_cross_entropys_norm():
    space = SearchSpace(3, ("x", "y"), "normalized", num_classes=10, normalization="norm")
    assert space.dimension == canonical_dimension(3)
    coords = [0.7, -1.3, 2.0, 0.4]
    vector = space.to_vector(coords)
    assert vector == pytest.approx(space.to_vector([5 * c for c in coords]))
    poly = TaylorPolynomial(vector, 3)
    grid = [(i + 0.5) / 64 for i in range(64)]
    push = [p * (1 - p) * (poly.derivative_y(1.0, p) - poly.derivative_y(0.0, p)) for p in grid]
    ce = [1 - p for p in grid]  # cross-entropy: g = x / y, so p (1 - p) / p
    assert math.fsum(v * v for v in push) == pytest.approx(math.fsum(v * v for v in ce), rel=1e-9)


def test_searched_learning_rate_is_a_bounded_log_coordinate():
    space = SearchSpace(
        3, ("x", "y"), "normalized", num_classes=10, normalization="push", lr_bounds=(0.05, 1.6)
    )
    assert space.dimension == canonical_dimension(3)  # 4 - 1 + 1
    assert space.learning_rate(space.start("zeros", 0.2)) == pytest.approx(0.2)
    assert space.learning_rate(space.start("zeros", 50.0)) == pytest.approx(1.6)  # clipped
    assert space.bound_excess([0, 0, 0, math.log(0.1)]) == 0.0
    assert space.bound_excess([0, 0, 0, math.log(3.2)]) == pytest.approx(math.log(2))
    assert space.bound_excess([0, 0, 0, math.log(0.025)]) == pytest.approx(math.log(2))


# --- seeds per candidate, searched lr, resume -------------------------------------------------
def _robust(**search) -> dict:
    cfg = synthetic_config(
        search={
            "space": "normalized",
            "learning_rate": "searched",
            "lr_bounds": [0.02, 0.5],
            "seeds_per_candidate": 2,
            "population_size": 6,
            "generations": 4,
            "seed": 5,
            **search,
        },
        task={"dataset": "digits", "lr": 0.1},
        execution={"evaluator_options": {"noise": 0.02}},
    )
    return cfg


def test_every_candidate_trains_on_the_generations_shared_seeds_with_its_own_learning_rate(tmp_path):
    result = run_search(tmp_path / "e", _robust(), log=None)
    assert result.complete and result.evaluations == 4 * 6 * 2
    recs = journal_without_timing(tmp_path / "e")
    for g in range(4):
        gen = [r for r in recs if r["generation"] == g]
        seeds = generation_seeds(5, g, 2)
        assert len(set(seeds)) == 2
        for r in gen:
            assert r["seed"] == seeds[r["replica"]]
            assert 0.02 <= r["lr"] <= 0.5
        assert Counter((r["index"], r["replica"]) for r in gen) == Counter(
            {(i, s): 1 for i in range(6) for s in range(2)}
        )
    # the fitness CMA-ES was told is the mean over the two seeds
    summary = ExperimentDir(tmp_path / "e").read_summary(0)
    cands = aggregate_candidates([r for r in recs if r["generation"] == 0], "mean")
    assert [c["fitness"] for c in summary["candidates"]] == [c["fitness"] for c in cands]
    assert cands[0]["fitness"] == pytest.approx(sum(cands[0]["fitnesses"]) / 2)


def test_worst_fitness_aggregates_by_the_worst_seed(tmp_path):
    run_search(tmp_path / "e", _robust(fitness="worst", generations=1), log=None)
    for c in aggregate_candidates(ExperimentDir(tmp_path / "e").evaluations(), "worst"):
        assert c["fitness"] == max(c["fitnesses"])


def _trainings(marker_dir: Path) -> Counter:
    """How many times each (generation or 'final', candidate, replica) was trained."""
    count: Counter = Counter()
    for p in marker_dir.iterdir():
        g, c, r, _a, _n = p.name.split("-")
        count[(g, int(c[1:]), int(r[1:]))] += 1
    return count


@pytest.mark.parametrize("fault", ["after-journal:1:2@2", "after-final@4", "before-tell:2"])
def test_kill_9_with_two_seeds_per_candidate_then_resume_loses_and_repeats_nothing(tmp_path, fault):
    def config(markers):
        cfg = _robust(generations=3, final_top_k=2, final_seeds=3)
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
    trained = _trainings(tmp_path / "markers")
    assert trained == _trainings(tmp_path / "ref-markers")  # the same trainings, each exactly once
    assert {n for key, n in trained.items() if key[0] != "final"} == {1}


# --- final selection ------------------------------------------------------------------------
def test_final_selection_trains_the_top_candidates_and_the_mean_on_fresh_seeds(tmp_path):
    result = run_search(tmp_path / "e", _robust(final_top_k=3, final_seeds=4), log=None)
    exp = ExperimentDir(tmp_path / "e")
    sel = exp.read_selection()
    assert [c["id"] for c in sel["contenders"]][-1] == "mean" and len(sel["contenders"]) == 4
    used = {r["seed"] for r in exp.evaluations()}
    assert len(sel["seeds"]) == 4 and used.isdisjoint(sel["seeds"])
    finals = exp.final_records()
    assert len(finals) == 16 and {r["seed"] for r in finals} == set(sel["seeds"])
    best = max(sel["table"], key=lambda c: c["mean_val_accuracy"])
    assert result.chosen["id"] == best["id"] == sel["chosen"]["id"]
    for row in sel["table"]:
        accs = [r["val_accuracy"] for r in finals if r["id"] == row["id"]]
        assert row["mean_val_accuracy"] == pytest.approx(sum(accs) / len(accs))


# --- baselines ------------------------------------------------------------------------------
def test_baselines_tune_every_arm_on_one_grid_and_the_selection_seeds_and_resume(tmp_path):
    exp_dir = tmp_path / "e"
    cfg = _robust(generations=2, final_top_k=1, final_seeds=3, baseline_lrs=[0.05, 0.1, 0.2])
    cfg["search"]["baseline_label_smoothing"] = [0.1]
    cfg["execution"]["evaluator_options"]["marker_dir"] = str(tmp_path / "markers")
    run_search(exp_dir, cfg, log=None)
    args = [sys.executable, "-m", "taylorglo.search", "baselines", str(exp_dir)]
    killed = subprocess.run(
        args,
        env=subprocess_env(TAYLORGLO_SEARCH_FAULT="after-baseline:label-smoothing-0.1:0.1:1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    done = len(ExperimentDir(exp_dir).baseline_records())
    assert 0 < done < 3 * 3 * 3
    summary = run_baselines(exp_dir, log=None)
    recs = ExperimentDir(exp_dir).baseline_records()
    assert len(recs) == 27 and len({(r["arm"], r["lr"], r["seed"]) for r in recs}) == 27
    assert summary["complete"] and summary["grid"] == [0.05, 0.1, 0.2]
    assert summary["seeds"] == ExperimentDir(exp_dir).read_selection()["seeds"]
    assert set(summary["arms"]) == {"cross-entropy", "label-smoothing-0.1", "chosen"}
    baselines = {a: t["best"]["mean_val_accuracy"] for a, t in summary["arms"].items() if a != "chosen"}
    assert summary["best_baseline"]["arm"] == max(baselines, key=baselines.get)
    assert summary["comparison"]["n_a"] == 3
    # each (arm, lr, seed) trained once across the kill (the fault fires after the journal append)
    marks = [p for p in (tmp_path / "markers").iterdir() if p.name.startswith("baseline-")]
    assert len(marks) == 27


# --- every polynomial the loss supports -----------------------------------------------------
def _digits_task() -> dict:
    return {
        "dataset": "digits",
        "model": "taylorglo_smallcnn",
        "train_size": 64,
        "validation_size": 64,
        "epochs": 1,
        "batch_size": 32,
        "lr": 0.05,
        "device": "cpu",
        "num_threads": 1,
    }


@pytest.mark.parametrize(
    "search",
    [
        {"order": 3, "variables": ["x", "y", "t"], "space": "canonical"},
        {"order": 4, "variables": ["x", "y"], "space": "canonical"},
        {"order": 3, "variables": ["x", "y"], "space": "original", "invariant_rule": "original"},
        {"order": 3, "variables": ["x", "y", "t"], "space": "normalized", "learning_rate": "searched"},
        {"order": 2, "variables": ["x", "y"], "space": "normalized", "learning_rate": "searched"},
        {"order": 6, "variables": ["x", "y"], "space": "normalized", "invariant_action": "tag"},
    ],
)
def test_one_real_generation_on_digits_for_each_polynomial_and_space(tmp_path, search):
    cfg = {
        "task": _digits_task(),
        "search": {"population_size": 3, "generations": 1, "final_top_k": 0, **search},
        "execution": {"backend": "inline"},
    }
    result = run_search(tmp_path / "e", cfg, log=None)
    assert result.complete and result.generations == 1
    recs = list(ExperimentDir(tmp_path / "e").evaluations())
    assert len(recs) == 3
    for r in recs:
        assert r["status"] in ("ok", "below_threshold", "invariant"), r.get("error")
        assert len(r["vector"]) == parameter_count(search["order"], search["variables"])
    trained = [r for r in recs if r["status"] != "invariant"]
    assert trained and all(isinstance(r["val_accuracy"], float) for r in trained)


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


def test_comparisons_of_constant_arms_store_as_json():
    from taylorglo.search.stats import compare_arms

    c = compare_arms([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert c["t"] is None and c["cohens_d"] is None and c["p"] == 0.0 and c["wins"] == 3
    json.dumps(c, allow_nan=False)
