"""``python -m taylorglo.train``: one training run from the command line, a JSON line on stdout.

    python -m taylorglo.train --dataset digits --loss params:0,-1,0.5,1,0,0,0.5,0.5 --epochs 10 --seed 3
    python -m taylorglo.train --config run.json --set lr=0.05 --set decay_epochs=[5,8] --test --output r.json
    python -m taylorglo.train --config-json '{"dataset": "mnist-5k", "epochs": 5}' --loss preset:NAME
    python -m taylorglo.train --dataset mnist-5k --loss gce:q=0.7 --label-noise symmetric:0.4 --test

Options override ``--config FILE`` / ``--config-json '{...}'`` (a JSON TrainConfig) in the order: config file, named options,
``--set key=value`` (the value read as JSON when it parses, else as a string). The result is printed
as one JSON line on stdout (and written to ``--output``); a progress bar goes to stderr when it is a
terminal. Exit status: 0 for ``ok``, ``diverged`` and ``below_threshold`` (results of the loss), 1
for ``failed``, 2 for invalid arguments or an unavailable dataset (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

__all__ = ["build_parser", "main"]

_NAMED = {
    # option dest: TrainConfig key
    "dataset": "dataset",
    "model": "model",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "optimizer": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "seed": "seed",
    "split_seed": "split_seed",
    "train_fraction": "train_fraction",
    "data_root": "data_root",
    "device": "device",
    "num_threads": "num_threads",
    "clean_validation": "clean_validation",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m taylorglo.train",
        description="Train a model with a loss and report validation accuracy (one TaylorGLO candidate evaluation).",
    )
    cfg = p.add_mutually_exclusive_group()
    cfg.add_argument("--config", help="JSON file with TrainConfig fields")
    cfg.add_argument(
        "--config-json",
        dest="config_json",
        metavar="JSON",
        help="TrainConfig fields as an inline JSON object",
    )
    p.add_argument(
        "--dataset",
        help="digits, mnist-5k, mnist1d, mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn "
        "(digits, mnist-5k and mnist1d need no download)",
    )
    p.add_argument("--model", help="a timm model name, e.g. taylorglo_smallcnn, taylorglo_resnet20")
    p.add_argument(
        "--loss",
        default="cross-entropy",
        help="cross-entropy | preset:NAME | params:v1,v2,... | gce[:q=Q] | sce[:alpha=A,beta=B] | mae, "
        "the first three optionally ;label_smoothing=S (default: %(default)s)",
    )
    p.add_argument(
        "--label-noise",
        dest="label_noise",
        metavar="KIND:RATE[:SEED]",
        help="flip round(RATE * n) labels of the training (and validation) split: KIND is symmetric "
        "(to another class, uniformly) or pairflip (c to c + 1 mod C); SEED defaults to 0; "
        "'none' for clean labels. The test split stays clean",
    )
    p.add_argument(
        "--clean-validation",
        action="store_true",
        default=None,
        dest="clean_validation",
        help="keep the validation labels clean under --label-noise",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, dest="max_steps")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--optimizer", help="sgd, nesterov, adamw, adam")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float, dest="weight_decay")
    p.add_argument("--schedule", help="constant, step, cosine")
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int, dest="split_seed")
    p.add_argument("--train-fraction", type=float, dest="train_fraction")
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--num-threads", type=int, dest="num_threads")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="any TrainConfig field; VALUE is read as JSON when possible (repeatable)",
    )
    p.add_argument("--test", action="store_true", help="also evaluate the test split")
    p.add_argument("--output", help="also write the result JSON to this file")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="force the progress bar")
    bar.add_argument("--no-progress", action="store_false", dest="progress", help="no progress bar")
    p.add_argument("--list-datasets", action="store_true", help="print the dataset names and exit")
    p.add_argument("--list-models", action="store_true", help="print taylorglo's registered models and exit")
    return p


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig mapping described by parsed arguments (not yet validated)."""
    cfg: dict[str, Any] = {}
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
        if not isinstance(cfg, dict):
            raise ValueError(f"--config {args.config!r} must hold a JSON object, got {type(cfg).__name__}")
    elif args.config_json:
        try:
            cfg = json.loads(args.config_json)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config-json is not valid JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise ValueError(f"--config-json must be a JSON object, got {type(cfg).__name__}")
    for dest, key in _NAMED.items():
        value = getattr(args, dest)
        if value is not None:
            cfg[key] = value
    if args.label_noise is not None:  # read by TrainConfig (taylorglo.train.noise.LabelNoise.parse)
        text = args.label_noise.strip()
        cfg["label_noise"] = None if text.lower() in ("none", "off", "") else text
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        cfg[key.strip()] = _parse_value(value.strip())
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from taylorglo.train import DatasetUnavailableError, LossSpec, TrainConfig, list_datasets, train
    from taylorglo.train.models import list_registered_models

    if args.list_datasets or args.list_models:
        for name in list_datasets() if args.list_datasets else list_registered_models():
            print(name)
        return 0
    try:
        config = TrainConfig.from_dict(config_from_args(args))
        spec = LossSpec.parse(args.loss)
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        result = train(config, spec, evaluate_test=args.test, show_progress=show)
    except (ValueError, DatasetUnavailableError, OSError) as e:  # config errors: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    line = json.dumps(result.to_dict(), sort_keys=False)
    if args.output:
        directory = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(directory, exist_ok=True)
        with open(args.output, "w") as f:
            f.write(line + "\n")
    if result.status == "failed":
        print(f"error: training failed: {result.error.splitlines()[0]}", file=sys.stderr)
    print(line, flush=True)
    return 1 if result.status == "failed" else 0
