"""TensorBoard scalars: one point per closed generation when tensorboard is installed (CI installs it)."""

from __future__ import annotations

import pytest

from taylorglo.search.runner import run_search

from .conftest import synthetic_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_each_generation_writes_fitness_sigma_and_failures_scalars(tmp_path):
    run_search(tmp_path / "exp", synthetic_config(), log=None, progress=False)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "exp" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"fitness/best", "fitness/median", "fitness/mean", "search/sigma", "search/failures"} <= tags
    best = acc.Scalars("fitness/best")
    assert [e.step for e in best] == [0, 1, 2, 3]
    summaries = [
        line for line in (tmp_path / "exp" / "search.log").read_text().splitlines() if "best" in line
    ]
    assert [round(e.value, 4) for e in best] == [float(line.split()[3]) for line in summaries]
