"""End to end with the real trainer on digits (a few optimizer steps per candidate) via the CLI:
run on 2 local workers, then status, analyze, evaluate, ttest and invocation on its directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import subprocess_env

pytest.importorskip("taylorglo.train")


def _cli(*args, cwd, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "taylorglo.search", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_real_search_on_digits_and_every_command_on_its_directory(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        "[task]\n"
        'dataset = "digits"\n'
        "epochs = 1\n"
        "max_steps = 4\n"
        "batch_size = 64\n"
        'device = "cpu"\n'
        "[search]\n"
        "population_size = 4\n"
        "generations = 2\n"
        "[execution]\n"
        "workers = 2\n"
    )
    exp = tmp_path / "runs" / "tiny"
    run = _cli("run", str(cfg), "--dir", str(exp), "--set", "search.seed=3", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "generation 1: best" in run.stdout and "f(x, y) =" in run.stdout
    recs = [json.loads(line) for line in (exp / "journal.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and all(r["status"] in ("ok", "invariant", "below_threshold") for r in recs)
    # 4 steps can end at chance (below_threshold: a measured result too)
    measured = [r for r in recs if r["status"] in ("ok", "below_threshold")]
    assert measured and all(0.0 <= r["val_accuracy"] <= 1.0 for r in measured)

    status = _cli("status", str(exp), cwd=tmp_path)
    assert status.returncode == 0 and "complete" in status.stdout

    analyze = _cli("analyze", str(exp), cwd=tmp_path)
    assert analyze.returncode == 0, analyze.stderr
    assert (exp / "generations.csv").read_text().startswith("generation,")
    assert (exp / "fitness.png").exists() and (exp / "best_loss.png").exists()

    evaluate = _cli("evaluate", str(exp), "--seeds", "2", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "cross-entropy" in evaluate.stdout and "test_accuracy" in evaluate.stdout

    ttest = _cli(
        "ttest",
        str(exp / "evaluations" / "chosen.jsonl"),
        str(exp / "evaluations" / "cross-entropy.jsonl"),
        cwd=tmp_path,
    )
    assert ttest.returncode == 0, ttest.stderr
    assert "Welch t" in ttest.stdout

    inv = _cli("invocation", str(exp), "0", "0", cwd=tmp_path)
    assert inv.returncode == 0 and inv.stdout.startswith("python -m taylorglo.train --config-json")

    again = _cli("run", str(exp), "--set", "search.population_size=5", cwd=tmp_path)
    assert again.returncode == 2 and "search.population_size" in again.stderr
