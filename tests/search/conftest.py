"""Shared helpers for the search tests: synthetic experiment configs and journal comparison."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taylorglo.search.journal import ExperimentDir
from taylorglo.search.runner import TIMING_FIELDS

SYNTHETIC = "taylorglo.search.synthetic:evaluate"
REPO = Path(__file__).resolve().parents[2]


def synthetic_config(**sections) -> dict:
    """A small synthetic-evaluator experiment; ``sections`` update search/execution/task keys."""
    cfg = {
        "task": {"dataset": "digits"},
        "search": {"order": 3, "population_size": 6, "generations": 4, "seed": 7, "final_top_k": 0},
        "execution": {"backend": "inline", "evaluator": SYNTHETIC, "evaluator_options": {}},
    }
    for section, values in sections.items():
        cfg[section].update(copy.deepcopy(values))
    return cfg


def journal_without_timing(directory) -> list[dict]:
    """The journal's records (read by its owner) sorted by (generation, index, replica), without the
    fields that vary between runs."""
    out = []
    for rec in ExperimentDir(directory).evaluations():
        for key in TIMING_FIELDS:
            rec.pop(key, None)
        out.append(rec)
    return sorted(out, key=lambda r: (r["generation"], r["index"], r.get("replica", 0)))


def strategy_fingerprint(directory) -> tuple:
    from taylorglo.search.strategy import CMAStrategy

    st = CMAStrategy.loads((Path(directory) / "state.pkl").read_bytes())
    return st.generation, st.sigma, tuple(st.mean)


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TAYLORGLO_SEARCH_FAULT", None)
    env.update(extra)
    return env


def run_cli(directory: Path, config: dict | None, fault: str | None = None, timeout: float = 120):
    """``python -m taylorglo.search run`` in a subprocess: a new experiment from ``config`` (written
    next to ``directory``) or a resume of ``directory``; ``fault`` sets TAYLORGLO_SEARCH_FAULT."""
    args = [sys.executable, "-m", "taylorglo.search", "run"]
    if config is not None:
        cfg_path = directory.parent / f"{directory.name}.json"
        cfg_path.write_text(json.dumps(config))
        args += [str(cfg_path), "--dir", str(directory)]
    else:
        args += [str(directory)]
    env = subprocess_env(**({"TAYLORGLO_SEARCH_FAULT": fault} if fault else {}))
    return subprocess.run(args + ["--no-progress"], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def python() -> str:
    return sys.executable


def robust_config(**search) -> dict:
    """A synthetic search in the normalized space with a searched lr and 2 seeds per candidate."""
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
