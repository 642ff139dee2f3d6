import json
import os
import subprocess
import sys

import pytest
from torch import nn

from taylorglo.train.cli import main


def _run(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "taylorglo.train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_end_to_end_prints_a_json_line_and_writes_the_output(tmp_path):
    out = tmp_path / "sub" / "result.json"
    proc = _run(
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--seed",
        "5",
        "--loss",
        "params:1,-1,1.3333333333333333,2,-2,0,0.5,0.5",
        "--set",
        "max_steps=3",
        "--set",
        "min_accuracy=null",
        "--test",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["status"] == "ok" and result["steps"] == 3 and result["seed"] == 5
    assert result["test_accuracy"] is not None
    assert result["loss"] == "params:1.0,-1.0,1.3333333333333333,2.0,-2.0,0.0,0.5,0.5"
    assert json.loads(out.read_text()) == result
    assert "\r" not in proc.stderr  # no progress bar when stderr is not a terminal


@pytest.mark.slow
def test_cli_config_error_exits_2_with_one_line(tmp_path):
    proc = _run("--set", "epoch=3", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "'epoch'" in proc.stderr and proc.stdout == ""


def test_main_reads_config_file_then_options_then_set(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"epochs": 5, "max_steps": 2, "seed": 9, "lr": 0.5}))
    assert main(["--config", str(cfg), "--seed", "4", "--set", "lr=0.05", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["config"]["epochs"], result["seed"], result["config"]["lr"], result["steps"]) == (
        5,
        4,
        0.05,
        2,
    )


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--loss", "mse"], "cannot read loss spec"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--dataset", "imagenet"], "unknown dataset"),
    ],
)
def test_main_bad_arguments_exit_2(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_main_failed_training_exits_1(monkeypatch, capsys):
    import taylorglo.train.loop as loop

    class Boom(nn.Module):
        def forward(self, logits, target):
            raise RuntimeError("boom")

    monkeypatch.setattr(loop, "build_loss", lambda spec, n, **kw: Boom())
    assert main(["--epochs", "1"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "failed"
    assert "boom" in captured.err


def test_main_lists_datasets_and_models(capsys):
    assert main(["--list-datasets"]) == 0
    assert "mnist-5k" in capsys.readouterr().out.split()
    assert main(["--list-models"]) == 0
    assert "taylorglo_resnet20" in capsys.readouterr().out.split()


def test_main_takes_inline_config_json(capsys):
    assert main(["--config-json", '{"epochs": 3, "max_steps": 1}', "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["config"]["epochs"], result["steps"]) == (3, 1)
    assert main(["--config-json", "[1, 2]"]) == 2
    assert "JSON object" in capsys.readouterr().err
