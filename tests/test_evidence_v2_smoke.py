"""A tiny run of benchmarks/evidence/protocol_v2.py (issue 12): every stage in-process, then a rerun
that trains nothing, and the report's outputs. The real protocol takes hours; this shrinks the data,
the budget and the grids so that CI exercises the script end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "evidence" / "protocol_v2.py"

TINY = """
[task]
dataset = "digits"
model = "taylorglo_smallcnn"
train_size = 60
validation_size = 60
epochs = 1
batch_size = 32
device = "cpu"
num_threads = 1

[protocol]
lrs = [0.05, 0.1]
label_smoothing = [0.1]
tuning_seeds = 2
final_seeds = 2
seed = 0

[search]
order = 3
space = "normalized"
learning_rate = "searched"
lr_bounds = [0.05, 0.1]
seeds_per_candidate = 1
population_size = 3
generations = 1
final_top_k = 1
final_seeds = 2

[[variants]]
name = "xyt"
variables = ["x", "y", "t"]

[[variants]]
name = "xy"
variables = ["x", "y"]

[execution]
backend = "inline"
"""


def _script():
    spec = importlib.util.spec_from_file_location(SCRIPT.stem, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _journal_lines(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): len(p.read_text().splitlines()) for p in out.rglob("*.jsonl")}


def test_protocol_v2_runs_every_stage_reads_test_only_in_final_and_resumes(tmp_path):
    pytest.importorskip("scipy")
    module = _script()
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    raw = module.load(str(cfg))
    res = module.run(raw, out)
    assert set(res["arms"]) == {"found-xyt", "found-xy", "cross-entropy", "label-smoothing"}
    for arm in res["arms"].values():
        assert arm["test"]["n"] == 2 and arm["spec"]["lr"] in (0.05, 0.1)
    assert res["best_baseline"] in ("cross-entropy", "label-smoothing")
    assert set(res["comparisons"]) == {"found-xyt", "found-xy", "cross-entropy", "label-smoothing"} - {
        res["best_baseline"]
    }
    # the test split is read in the final stage only: no other journal holds a test accuracy
    for path in out.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "final" not in path.parts:
                assert rec.get("test_accuracy") is None, path
    seeds = module.seeds_of(raw)
    assert set(seeds["tuning"]).isdisjoint(seeds["final"])
    assert (out / "results.md").read_text().startswith("# Evidence, protocol v2")
    assert json.loads((out / "results.json").read_text())["best_baseline"] == res["best_baseline"]
    before = _journal_lines(out)
    again = module.run(raw, out)  # resumes: everything is there, nothing is trained again
    assert _journal_lines(out) == before
    assert again["arms"]["cross-entropy"]["test"] == res["arms"]["cross-entropy"]["test"]
