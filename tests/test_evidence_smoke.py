"""A tiny run of benchmarks/evidence/run_evidence.py (issue 7): every stage, in seconds, in-process.

The real protocol (mnist-5k, 20 epochs, 16 x 10 search, 20 seeds) takes about an hour; this
shrinks the data, the budget and the search so that CI exercises the script end to end, its
resumption (a second run trains nothing) and its outputs.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs an evidence script end to end

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "evidence" / "run_evidence.py"

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

[lr_tuning]
grid = [0.05, 0.1]
seeds = [1]

[search]
order = 3
population_size = 4
generations = 2
seed = 0

[execution]
backend = "inline"

[final]
seeds = 2
batch = 1
seed_base = 100
label_smoothing = 0.1
"""


def _script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("final_task", ["", "[final_task]\nepochs = 2\n"], ids=["same-task", "final-task"])
def test_evidence_script_runs_every_stage_and_resumes_without_retraining(tmp_path, final_task):
    pytest.importorskip("scipy")
    script = _script()
    config = tmp_path / "tiny.toml"
    config.write_text(TINY + final_task)
    out = tmp_path / "out"
    res = script.run(str(config), out)
    final = out / ("final" if final_task else "search")
    if final_task:
        assert json.loads((final / "config.json").read_text())["task"]["epochs"] == 2

    tuning = json.loads((out / "lr_tuning.json").read_text())
    assert tuning["best_lr"] in (0.05, 0.1)
    assert json.loads((out / "search" / "config.json").read_text())["task"]["lr"] == tuning["best_lr"]
    assert res["final_n"] == 2
    assert set(res["final"]) == {"found-mean", "found-best", "cross-entropy", "label-smoothing"}
    pairs = {(c["found"], c["baseline"]) for c in res["comparisons"] if c["metric"] == "test_accuracy"}
    assert pairs == {(f, b) for f in script.FOUND for b in script.BASELINES}
    saved = json.loads((out / "results.json").read_text())
    assert saved["final"]["cross-entropy"]["test_accuracy"]["n"] == 2
    assert "| cross-entropy |" in (out / "results.md").read_text()

    journal = (out / "search" / "journal.jsonl").read_text()
    evaluations = {p.name: p.read_text() for p in (final / "evaluations").glob("*.jsonl")}
    assert len(evaluations) == 4
    script.run(str(config), out)  # everything is cached: nothing is trained again
    assert (out / "search" / "journal.jsonl").read_text() == journal
    assert {p.name: p.read_text() for p in (final / "evaluations").glob("*.jsonl")} == evaluations


def test_investigations_measure_scale_and_data_fraction_on_validation_only(tmp_path):
    pytest.importorskip("scipy")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "out"
    _script().run(str(config), out)
    investigate = _script(SCRIPT.parent / "investigate.py")
    common = [str(config), "--out", str(out), "--seeds", "2"]
    investigate.main([*common[:1], "scale", *common[1:], "--scales", "0.5", "--lrs", "0.2"])
    investigate.main([*common[:1], "data-fraction", *common[1:], "--sizes", "30"])
    investigate.main([str(config), "history", "--out", str(out), "--seed", "100"])
    history = json.loads((out / "investigate_history_seed100.json").read_text())
    assert set(history["runs"]) == {"found-mean", "cross-entropy"}
    assert all(len(run["history"]) == 1 for run in history["runs"].values())  # one epoch
    scale = json.loads((out / "investigate_scale.json").read_text())
    lr = json.loads((out / "lr_tuning.json").read_text())["best_lr"]
    assert {f"found-mean-x0.5 (lr {lr:g})", "cross-entropy lr 0.2", "label-smoothing lr 0.2"} <= set(
        scale["rows"]
    )
    fraction = json.loads((out / "investigate_data_fraction.json").read_text())
    assert fraction["sizes"]["30"]["losses"]["cross-entropy"]["n"] == 2
    for path in (out / "investigate").glob("*/evaluations/*.jsonl"):
        assert all(json.loads(line)["test_accuracy"] is None for line in path.read_text().splitlines())
