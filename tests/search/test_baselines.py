"""Baselines tuned as hard as the found loss (``baselines``): one grid, the selection's seeds, resume."""

from __future__ import annotations

import subprocess
import sys

import pytest

from taylorglo.search.baselines import run_baselines
from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import run_search

from .conftest import robust_config, subprocess_env


# --- baselines ------------------------------------------------------------------------------
@pytest.mark.slow
def test_baselines_tune_every_arm_on_one_grid_and_the_selection_seeds_and_resume(tmp_path):
    exp_dir = tmp_path / "e"
    cfg = robust_config(generations=2, final_top_k=1, final_seeds=3, baseline_lrs=[0.05, 0.1, 0.2])
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
