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


def _script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _journal_lines(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): len(p.read_text().splitlines()) for p in out.rglob("*.jsonl")}


@pytest.mark.slow
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


NOISY = (
    TINY.replace(
        "num_threads = 1\n",
        'num_threads = 1\nrestore_best = true\n\n[task.label_noise]\nkind = "symmetric"\nrate = 0.4\nseed = 3\n',
        1,
    )
    .replace("label_smoothing = [0.1]\n", "")
    .replace(
        "seed = 0\n\n[search]",
        'seed = 0\n\n[protocol.baselines]\ncross-entropy = "cross-entropy"\ngce = ["gce:q=0.4", "gce:q=0.7"]\n'
        'mae = "mae"\ntaylor-ce = ["preset:taylor-ce-2"]\n\n[search]',
    )
    .replace(
        'name = "xy"\nvariables = ["x", "y"]\n',
        'name = "xy"\nvariables = ["x", "y"]\nstart = "best-baseline"\n',
    )
)


@pytest.mark.slow
def test_protocol_v2_baseline_families_under_label_noise(tmp_path):
    """The noisy-label protocol (issue 17): baseline families tuned member by member, each in the final
    table at its best member by (noisy) validation; the realized noise rate reported; test clean."""
    pytest.importorskip("scipy")
    module = _script()
    cfg = tmp_path / "noisy.toml"
    cfg.write_text(NOISY)
    raw = module.load(str(cfg))
    assert list(module.baseline_arms(raw)) == ["cross-entropy", "gce:q=0.4", "gce:q=0.7", "mae", "taylor-ce"]
    out = tmp_path / "out"
    res = module.run(raw, out)
    assert set(res["arms"]) == {"found-xyt", "found-xy", "cross-entropy", "gce", "mae", "taylor-ce"}
    assert res["families"]["gce"] in ("gce:q=0.4", "gce:q=0.7")
    assert res["arms"]["gce"]["spec"]["loss"] == res["families"]["gce"]
    assert res["best_baseline"] in ("cross-entropy", "gce", "mae", "taylor-ce")
    tuning = res["tuning"]
    best = max(res["families"].values(), key=lambda a: tuning[a]["best_mean_val_accuracy"])
    assert res["families"][res["best_baseline"]] == best
    assert res["label_noise"] == {"kind": "symmetric", "rate": 0.4, "seed": 3}
    assert res["realized_noise_rate"] == [0.4]  # 24 of 60 training labels flipped
    assert (
        "symmetric label noise 0.4 (noisy validation), every training early-stopped"
        in (out / "results.md").read_text()
    )
    assert res["restore_best"] is True
    # the xy search started from the expansion of the best tuned baseline's member, at task.lr
    start = "loss:" + res["arms"][res["best_baseline"]]["spec"]["loss"]
    assert res["searches"]["xy"]["config"]["start"] == start
    stored = json.loads((out / "search-xy" / "config.json").read_text())["search"]
    assert (stored["start"], stored["start_lr"]) == (start, 0.0)
    assert (
        f"Variant xy started from the best tuned baseline's expansion, `{start}`."
        in (out / "results.md").read_text()
    )
    finals = [
        json.loads(line) for p in (out / "final").rglob("*.jsonl") for line in p.read_text().splitlines()
    ]
    assert finals and all(r["status"] != "ok" or r["best_epoch"] is not None for r in finals)
    # the settings side by side: a table row per setting, found against its best baseline
    summary = _script(ROOT / "benchmarks" / "evidence" / "noisy" / "summary.py")
    assert summary.main([str(out), str(tmp_path / "not-run"), "--out", str(tmp_path / "summary")]) == 0
    text = (tmp_path / "summary" / "summary.md").read_text()
    assert (
        f"| symmetric 0.4, {res['dataset']}, noisy validation, early stopping | found-xyt | "
        + res["best_baseline"]
        in text
    )
    assert "Not finished (no results.json yet): not-run." in text
    assert (tmp_path / "summary" / "accuracy_vs_noise.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("baselines", "message"),
    [
        ('robust = "gce:q=nope"', "protocol.baselines.robust"),
        ("robust = 3", "protocol.baselines.robust"),
        ('found-x = "mae"', "found-"),
    ],
)
def test_protocol_v2_rejects_bad_baselines(tmp_path, baselines, message):
    module = _script()
    cfg = tmp_path / "bad.toml"
    cfg.write_text(NOISY.replace('mae = "mae"\n', baselines + "\n"))
    with pytest.raises(SystemExit, match=message):
        module.load(str(cfg))


@pytest.mark.parametrize(
    ("a", "b", "p", "mw", "searches", "expected"),
    [
        (0.48, 0.45, 0.0008, 0.0003, 1, "win"),
        (0.48, 0.45, 0.0008, 0.0003, 2, "win"),
        (0.44, 0.36, 0.022, 0.32, 1, "no difference"),  # Welch alone is not enough
        (0.44, 0.36, 0.03, 0.03, 1, "win"),
        (0.44, 0.36, 0.03, 0.03, 2, "no difference"),  # Bonferroni over two searches: 0.025
        (0.41, 0.44, 1e-7, 5e-6, 2, "loss"),
        (0.41, 0.44, None, 5e-6, 1, "no difference"),
    ],
)
def test_noisy_summary_verdict_needs_both_tests_under_the_corrected_level(a, b, p, mw, searches, expected):
    summary = _script(ROOT / "benchmarks" / "evidence" / "noisy" / "summary.py")
    comparison = {"mean_a": a, "mean_b": b, "p": p, "mann_whitney_p": mw}
    assert summary.verdict(comparison, searches) == expected


def test_noisy_summary_ranks_arms_by_their_chosen_members_validation():
    summary = _script(ROOT / "benchmarks" / "evidence" / "noisy" / "summary.py")

    def arm(val, test):
        return {"val": {"mean": val}, "test": {"mean": test}}

    res = {
        "arms": {
            "gce": arm(0.30, 0.45),
            "sce": arm(0.29, 0.47),
            "found-xyt": arm(0.31, 0.48),
            "mae": arm(0.1, 0.2),
        },
        "families": {"gce": "gce:q=0.4", "sce": "sce:alpha=0.1,beta=1.0", "mae": "mae"},
        "tuning": {  # the other GCE member is better on validation, but the family entered at q=0.4
            "gce:q=0.4": {"best_mean_val_accuracy": 0.33},
            "gce:q=0.7": {"best_mean_val_accuracy": 0.50},
            "sce:alpha=0.1,beta=1.0": {"best_mean_val_accuracy": 0.28},
            "found-xyt": {"best_mean_val_accuracy": 0.32},
            "mae": {"best_mean_val_accuracy": 0.05},
        },
    }
    r = summary.validation_ranking(res)
    assert r["arms"] == 4 and r["best_tuning"] == "gce" and r["best_test"] == "found-xyt"
    assert r["tuning_rho"] == pytest.approx(0.4)  # tuning ranks 3,1,2,0 against test ranks 1,2,3,0
    assert r["final_rho"] == pytest.approx(0.8)
    res["arms"]["mae"]["test"]["mean"] = None  # an arm with no finished seed drops out
    assert summary.validation_ranking(res)["arms"] == 3


@pytest.mark.slow
def test_expansion_check_trains_a_loss_and_its_expansions_on_validation_and_resumes(tmp_path):
    from taylorglo.train import LossSpec
    from taylorglo.train.expansion import expand_loss

    check = _script(ROOT / "benchmarks" / "evidence" / "noisy" / "expansion_check.py")
    config = tmp_path / "tiny.toml"
    config.write_text(
        TINY.replace("[protocol]", '[task.label_noise]\nkind = "symmetric"\nrate = 0.2\n\n[protocol]')
    )
    out = tmp_path / "check"
    argv = [str(config), "--loss", "gce:q=0.4", "--orders", "3", "4", "--lrs", "0.05", "0.1"]
    assert check.main([*argv, "--seeds", "2", "--out", str(out)]) == 0
    table = json.loads((out / "expansion_check.json").read_text())
    assert list(table) == ["gce:q=0.4", "order-3 expansion", "order-4 expansion"]
    poly = expand_loss("gce:q=0.4", 4, num_classes=10)
    assert LossSpec.parse(table["order-4 expansion"]["spec"]["loss"]).params == pytest.approx(poly.vector)
    assert all(len(row["cells"]) == 2 and row["cells"]["0.1"]["n"] == 2 for row in table.values())
    records = [json.loads(line) for line in next(out.rglob("baselines.jsonl")).read_text().splitlines()]
    assert len(records) == 3 * 2 * 2 and not any("test" in key for r in records for key in r)
    assert "| order-3 expansion |" in (out / "expansion_check.md").read_text()
    # rerun: everything is in the journal, nothing trains again
    assert check.main([*argv, "--seeds", "2", "--out", str(out)]) == 0
    assert len(next(out.rglob("baselines.jsonl")).read_text().splitlines()) == len(records)
    with pytest.raises(SystemExit, match="--loss 'gce:q=0.4;label_smoothing=0.1'"):
        check.main(
            [str(config), "--loss", "gce:q=0.4;label_smoothing=0.1", "--lrs", "0.1", "--out", str(out)]
        )


@pytest.mark.parametrize(
    "path", sorted((ROOT / "benchmarks" / "evidence" / "noisy").glob("*.toml")), ids=lambda p: p.stem
)
def test_every_committed_noisy_config_loads_and_each_search_validates(path):
    from taylorglo.search.config import ExperimentConfig
    from taylorglo.train import TrainConfig

    module = _script()
    raw = module.load(str(path))
    TrainConfig.from_dict(raw["task"])
    assert module.baseline_arms(raw) and module.seeds_of(raw)["final"]
    names = [v["name"] for v in raw["variants"]]
    assert len(set(names)) == len(names) and "xyt" in names
    for variant in raw["variants"]:
        cfg = ExperimentConfig.from_dict(module.variant_config(raw, variant), validate_task=False)
        assert tuple(cfg.search.variables) == ("x", "y", "t")
