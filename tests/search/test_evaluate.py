"""The default evaluator (``evaluate``): one real generation on digits for each polynomial and space."""

from __future__ import annotations

import pytest

from taylorglo.polynomial import parameter_count
from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search


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
