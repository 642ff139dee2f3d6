"""The search loop (``runner``) with the synthetic evaluator: convergence, limits, failures, the
invariant, spaces, seeds per candidate, a searched learning rate and the final selection."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from taylorglo.polynomial import canonical_dimension, parameter_count
from taylorglo.search.config import ConfigError, ExperimentConfig
from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import (
    aggregate_candidates,
    generation_seed,
    generation_seeds,
    is_collapsed,
    run_search,
)
from taylorglo.search.strategy import CMAStrategy

from .conftest import journal_without_timing, robust_config, synthetic_config


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
    from taylorglo.polynomial import canonical_coordinates

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


@pytest.mark.parametrize("spec", ["gce:q=0.4", "sce:alpha=0.1,beta=1.0", "cross-entropy;label_smoothing=0.3"])
def test_a_search_can_start_from_a_baseline_losss_expansion(tmp_path, spec):
    from taylorglo.train.expansion import expand_loss

    cfg = synthetic_config(search={"start": f"loss:{spec}", "generations": 1, "space": "normalized"})
    run_search(tmp_path / "e", cfg, log=None)
    exp = ExperimentDir(tmp_path / "e")
    st = CMAStrategy.loads(exp.generation_dir(0).joinpath("strategy.pkl").read_bytes())
    space = ExperimentConfig.from_dict(cfg, validate_task=False).search_space()
    want = space.to_coords(expand_loss(spec, 3, num_classes=10).vector)
    assert list(st.mean) == pytest.approx(want, abs=1e-12)
    # the normalized space keeps the baseline's shape: the start trains like the expansion with a
    # rescaled learning rate (the same gradient up to a positive factor)
    torch = pytest.importorskip("torch")
    from taylorglo import TaylorLoss

    logits = torch.randn(32, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = torch.arange(32) % 10
    grads = []
    for vector in (space.to_vector(want), expand_loss(spec, 3, num_classes=10).vector):
        z = logits.clone().requires_grad_()
        grads.append(torch.autograd.grad(TaylorLoss(list(vector), order=3)(z, target), z)[0])
    scale = (grads[0] * grads[1]).sum() / (grads[1] * grads[1]).sum()
    assert scale > 0
    torch.testing.assert_close(grads[0], scale * grads[1], rtol=1e-9, atol=1e-12)


def test_a_searched_learning_rate_starts_at_start_lr_rescaled_with_the_start_loss(tmp_path):
    search = {
        "start": "loss:gce:q=0.4",
        "generations": 1,
        "space": "normalized",
        "learning_rate": "searched",
        "lr_bounds": [0.01, 10.0],
    }
    means = {}
    for name, extra in [("task-lr", {}), ("start-lr", {"start_lr": 0.4})]:
        cfg = synthetic_config(search={**search, **extra})
        run_search(tmp_path / name, cfg, log=None)
        st = CMAStrategy.loads(
            ExperimentDir(tmp_path / name).generation_dir(0).joinpath("strategy.pkl").read_bytes()
        )
        space = ExperimentConfig.from_dict(cfg, validate_task=False).search_space()
        lr = extra.get("start_lr", ExperimentConfig.from_dict(cfg, validate_task=False).base_lr())
        assert list(st.mean) == pytest.approx(space.start(search["start"], lr), abs=1e-12)
        means[name] = st.mean
    # the same loss, the learning rate coordinate moved by ln(0.4 / task.lr)
    base_lr = ExperimentConfig.from_dict(synthetic_config(search=search), validate_task=False).base_lr()
    assert list(means["start-lr"][:-1]) == pytest.approx(list(means["task-lr"][:-1]))
    assert means["start-lr"][-1] - means["task-lr"][-1] == pytest.approx(math.log(0.4 / base_lr))


def test_a_different_experiment_in_the_same_directory_is_refused(tmp_path):

    run_search(tmp_path / "e", synthetic_config(search={"generations": 1}), log=None)
    with pytest.raises(ConfigError, match="search.order"):
        run_search(tmp_path / "e", synthetic_config(search={"order": 4}), log=None)
    # extending the generation limit is allowed
    res = run_search(tmp_path / "e", synthetic_config(search={"generations": 2}), log=None)
    assert res.generations == 2


def test_every_candidate_trains_on_the_generations_shared_seeds_with_its_own_learning_rate(tmp_path):
    result = run_search(tmp_path / "e", robust_config(), log=None)
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
    run_search(tmp_path / "e", robust_config(fitness="worst", generations=1), log=None)
    for c in aggregate_candidates(ExperimentDir(tmp_path / "e").evaluations(), "worst"):
        assert c["fitness"] == max(c["fitnesses"])


# --- final selection ------------------------------------------------------------------------
def test_final_selection_trains_the_top_candidates_and_the_mean_on_fresh_seeds(tmp_path):
    result = run_search(tmp_path / "e", robust_config(final_top_k=3, final_seeds=4), log=None)
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


def test_collapse_is_chance_level_in_clean_terms_on_noisy_validation_labels():
    def rec(acc, status="ok", **noise):
        return {"status": status, "val_accuracy": acc, **({"label_noise": noise} if noise else {})}

    assert is_collapsed(rec(0.15), 10) and not is_collapsed(rec(0.16), 10)
    assert is_collapsed(rec(0.9, "below_threshold"), 10) and not is_collapsed(rec(None, "failed"), 10)
    noisy = {"val_flipped": 600, "val_realized_rate": 0.6}  # 0.15 clean reads 0.1167 there
    assert not is_collapsed(rec(0.14, **noisy), 10)  # a model of about 20 % clean accuracy
    assert is_collapsed(rec(0.11, **noisy), 10)
    clean_validation = {"val_flipped": 0, "val_realized_rate": 0.0}
    assert is_collapsed(rec(0.14, **clean_validation), 10)
