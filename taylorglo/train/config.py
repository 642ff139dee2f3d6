"""The training configuration of one candidate evaluation.

One :class:`TrainConfig` describes everything that decides a training run except the loss: the
data (dataset, splits, augmentation), the model, the optimizer and learning-rate schedule, the
budget (epochs or steps), the seed and the early-stop rules. The defaults follow the original
TaylorGLO trainer where it applies (SGD with momentum 0.9, batch 128, validation carved from the
training set with seed 42, abort when validation accuracy is under 0.15 after epoch 10)
and are sized so that ``train(TrainConfig())`` fits the small CNN on ``digits`` in a few
seconds on a laptop CPU.

Every field is validated on construction; :meth:`TrainConfig.from_dict` also rejects unknown keys,
naming them, so a typo in a search config fails before hundreds of trainings run with a default.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from taylorglo.train.data import default_data_root
from taylorglo.train.noise import LabelNoise

__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "default_data_root"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "nesterov", "adamw", "adam")
SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")


@dataclass
class TrainConfig:
    """Everything that decides one training run except the loss.

    Data:
        dataset: a name from :func:`taylorglo.train.data.list_datasets` (``digits``, ``mnist-5k``,
            ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``cifar100``, ``svhn``, and
            ``mnist1d``: 1-D sequences, for 1-D models only).
        data_root: folder holding (or receiving) downloaded datasets; ``~`` is expanded.
        download: whether a torchvision dataset missing from ``data_root`` may be downloaded.
        split_seed: seed of the one shuffle that carves the validation split out of the training
            set. Independent of ``seed``, so every candidate of a search sees the same split.
        validation_size: validation examples (an int) or fraction of the training set (a float in
            (0, 1)); ``None`` takes the dataset's default (5,000 for MNIST/CIFAR/SVHN).
        train_fraction: fraction of the remaining training examples used (the same subset for
            every seed). ``train_size``: an absolute count instead; at most one may be set.
        augment: random crop (and flip for CIFAR); ``None`` takes the dataset's default.
        label_noise: ``None`` (clean labels) or ``{"kind": "symmetric" | "pairflip", "rate": r,
            "seed": s}`` (seed optional, default 0; the string ``"symmetric:0.4[:SEED]"`` is read
            too): exactly ``round(r * n)`` labels of the training split flipped, to another class
            uniformly (``symmetric``) or from c to c + 1 mod C (``pairflip``); see
            :mod:`taylorglo.train.noise`. The flips depend only on the dataset, ``split_seed`` and
            the noise seed, never on ``seed``. The test split is always clean.
        clean_validation: keep the validation labels clean under ``label_noise`` (default False:
            the validation split is noisy too, as a user's held-out labels would be).
    Model:
        model: a timm model name (``pretrained=False`` always) or one registered by taylorglo:
            ``taylorglo_smallcnn``, ``taylorglo_allcnn_c``, ``taylorglo_resnet20`` (and 32, 56),
            and the 1-D ``taylorglo_cnn1d`` (for ``mnist1d``). A 1-D model with an image dataset,
            or an image model with a 1-D dataset, is a ValueError.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``drop_rate``).
    Optimization:
        optimizer: ``sgd`` (momentum, no Nesterov; the original), ``nesterov``, ``adamw``, ``adam``.
        lr, momentum, weight_decay: as in torch; timm excludes biases and norm weights from decay.
        schedule: ``constant``, ``step`` (multiply by ``decay_gamma`` at each of ``decay_epochs``,
            absolute epochs) or ``cosine`` (to ``min_lr`` at the end of the run).
        warmup_epochs: linear warmup from ``warmup_lr`` (may be fractional).
        epochs: training epochs; ``max_steps`` caps the optimizer steps (the schedule and the
            progress variable t then run over the capped length).
        batch_size, eval_batch_size: examples per optimizer step / per evaluation forward.
        drop_last: skip the last partial batch of each epoch.
    Run:
        seed: seeds python, numpy and torch for the run (model init, dropout, batch order,
            augmentation). Same seed and thread count on CPU gives bitwise identical results.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        num_threads: torch intra-op threads during the run (``None`` leaves the process setting).
        amp: bf16 autocast; ``None`` means on for CUDA, off elsewhere.
        channels_last: channels-last memory format; ``None`` means on for CUDA.
        compile: wrap the model in ``torch.compile``.
        deterministic: ask cuDNN for deterministic kernels (CPU runs are deterministic anyway).
    Early stop and evaluation:
        min_accuracy, min_accuracy_epoch: stop with status ``below_threshold`` when validation
            accuracy is under ``min_accuracy`` at the end of any evaluated epoch from
            ``min_accuracy_epoch`` on (the original: 0.15 after epoch 10); a run that ends under
            it at chance level (<= 1.5 / num_classes) gets ``below_threshold`` whatever its
            length (see :func:`taylorglo.train.train`). ``None`` disables both. It is a clean
            accuracy: on noisy validation labels the trainer compares with what a model of that
            clean accuracy scores there (:func:`taylorglo.train.noise.noisy_accuracy_floor`).
        eval_every: evaluate the validation split every this many epochs (and always at the end).
        restore_best: early stopping by validation: at the end of a run, load the weights of the
            evaluated epoch with the best validation accuracy (the first, on ties) and report its
            validation numbers (``TrainResult.best_epoch``); the test split is measured on those
            weights. The run still trains every epoch. A run stopped by the accuracy floor or by a
            non-finite loss keeps its status but ends on its best epoch too, as early stopping would
            keep it. With noisy labels this is the usual defence of a loss that memorizes the noise
            late in training.
        label_smoothing: label smoothing of the cross-entropy baseline (a loss spec may set its own).
    """

    dataset: str = "digits"
    model: str = "taylorglo_smallcnn"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    max_steps: Optional[int] = None
    batch_size: int = 128
    eval_batch_size: int = 1000
    drop_last: bool = False
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    decay_epochs: tuple = ()
    decay_gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    min_lr: float = 0.0
    seed: int = 0
    split_seed: int = 42
    validation_size: Optional[Union[int, float]] = None
    train_fraction: float = 1.0
    train_size: Optional[int] = None
    augment: Optional[bool] = None
    label_noise: Optional[dict] = None
    clean_validation: bool = False
    data_root: str = field(default_factory=default_data_root)
    download: bool = True
    device: str = "auto"
    num_threads: Optional[int] = None
    amp: Optional[bool] = None
    channels_last: Optional[bool] = None
    compile: bool = False
    deterministic: bool = False
    min_accuracy: Optional[float] = 0.15
    min_accuracy_epoch: int = 10
    eval_every: int = 1
    restore_best: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.decay_epochs = (
            tuple(self.decay_epochs) if isinstance(self.decay_epochs, (list, tuple)) else self.decay_epochs
        )
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name))
        # numbers given as ints where floats are expected are normalized, so to_dict is stable
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        self.decay_epochs = tuple(
            float(e) if not float(e).is_integer() else int(e) for e in self.decay_epochs
        )
        self.dataset = self.dataset.strip().lower()
        self.optimizer = self.optimizer.strip().lower()
        self.schedule = self.schedule.strip().lower()
        if self.label_noise is not None:
            try:
                self.label_noise = LabelNoise.coerce(self.label_noise).to_dict()
            except ValueError as e:
                raise ValueError(f"TrainConfig.{e}") from None
        self._check_values()

    def _check_values(self) -> None:
        def bad(name: str, what: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")

        if not self.dataset:
            raise bad("dataset", "a dataset name")
        if not self.model.strip():
            raise bad("model", "a model name")
        if self.epochs < 0:
            raise bad("epochs", ">= 0")
        if self.max_steps is not None and self.max_steps < 0:
            raise bad("max_steps", ">= 0 or None")
        for name in ("batch_size", "eval_batch_size", "eval_every", "min_accuracy_epoch"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {list(SCHEDULES)}")
        for name in ("lr", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr"):
            if not getattr(self, name) >= 0.0:  # also rejects NaN
                raise bad(name, "a number >= 0")
        if not self.lr > 0.0:
            raise bad("lr", "> 0")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "in [0, 1)")
        if not self.decay_gamma > 0.0:
            raise bad("decay_gamma", "> 0")
        if any(not e > 0 for e in self.decay_epochs) or list(self.decay_epochs) != sorted(self.decay_epochs):
            raise bad("decay_epochs", "increasing positive epochs")
        if self.decay_epochs and self.schedule != "step":
            raise bad("decay_epochs", f"empty unless schedule is 'step' (schedule is {self.schedule!r})")
        vs = self.validation_size
        if vs is not None:
            if isinstance(vs, float) and not 0.0 < vs < 1.0:
                raise bad("validation_size", "a count >= 1 or a fraction in (0, 1)")
            if isinstance(vs, int) and vs < 1:
                raise bad("validation_size", "a count >= 1 or a fraction in (0, 1)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise bad("train_fraction", "in (0, 1]")
        if self.train_size is not None:
            if self.train_size < 1:
                raise bad("train_size", ">= 1 or None")
            if self.train_fraction != 1.0:
                raise ValueError(
                    f"TrainConfig: set train_size ({self.train_size}) or train_fraction "
                    f"({self.train_fraction}), not both"
                )
        if self.num_threads is not None and self.num_threads < 1:
            raise bad("num_threads", ">= 1 or None")
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise bad("min_accuracy", "in [0, 1] or None")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "in [0, 1)")
        dev = self.device.strip().lower()
        if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
            raise bad("device", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        self.device = dev
        for key in self.model_kwargs:
            if not isinstance(key, str):
                raise bad("model_kwargs", "a dict with string keys")
            if key in ("pretrained", "num_classes", "in_chans"):
                raise ValueError(
                    f"TrainConfig.model_kwargs may not set {key!r}: it comes from the dataset "
                    "(pretrained is always False)"
                )
        _check_model_fits_dataset(self.model, self.dataset)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a mapping (e.g. parsed JSON); unknown keys raise ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a TrainConfig is built from a mapping, got {type(d).__name__}")
        _check_keys(d.keys())
        return cls(**dict(d))

    @classmethod
    def coerce(cls, config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
        """Return ``config`` unchanged if it is a TrainConfig, else build one from a mapping (None: defaults)."""
        if config is None:
            return cls()
        if isinstance(config, TrainConfig):
            return config
        return cls.from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists) that :meth:`from_dict` reads back to an equal config."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with ``overrides`` applied and validated; unknown keys raise ValueError naming them."""
        _check_keys(overrides.keys())
        return dataclasses.replace(self, **overrides)


# ----------------------------------------------------------------------------------------------
# Field types, checked by hand so that the messages are clear and Python 3.9 is enough.
_INT = "int"
_FLOAT = "float"
_STR = "str"
_BOOL = "bool"
_FIELD_SPECS: dict[str, tuple[tuple[str, ...], bool]] = {
    # name: (accepted kinds, None allowed)
    "dataset": ((_STR,), False),
    "model": ((_STR,), False),
    "model_kwargs": (("dict",), False),
    "epochs": ((_INT,), False),
    "max_steps": ((_INT,), True),
    "batch_size": ((_INT,), False),
    "eval_batch_size": ((_INT,), False),
    "drop_last": ((_BOOL,), False),
    "optimizer": ((_STR,), False),
    "lr": ((_FLOAT,), False),
    "momentum": ((_FLOAT,), False),
    "weight_decay": ((_FLOAT,), False),
    "schedule": ((_STR,), False),
    "decay_epochs": (("epochs",), False),
    "decay_gamma": ((_FLOAT,), False),
    "warmup_epochs": ((_FLOAT,), False),
    "warmup_lr": ((_FLOAT,), False),
    "min_lr": ((_FLOAT,), False),
    "seed": ((_INT,), False),
    "split_seed": ((_INT,), False),
    "validation_size": ((_INT, _FLOAT), True),
    "train_fraction": ((_FLOAT,), False),
    "train_size": ((_INT,), True),
    "augment": ((_BOOL,), True),
    "label_noise": (("dict", _STR), True),
    "clean_validation": ((_BOOL,), False),
    "data_root": ((_STR,), False),
    "download": ((_BOOL,), False),
    "device": ((_STR,), False),
    "num_threads": ((_INT,), True),
    "amp": ((_BOOL,), True),
    "channels_last": ((_BOOL,), True),
    "compile": ((_BOOL,), False),
    "deterministic": ((_BOOL,), False),
    "min_accuracy": ((_FLOAT,), True),
    "min_accuracy_epoch": ((_INT,), False),
    "eval_every": ((_INT,), False),
    "restore_best": ((_BOOL,), False),
    "label_smoothing": ((_FLOAT,), False),
}
_FLOAT_FIELDS = tuple(n for n, (kinds, _) in _FIELD_SPECS.items() if kinds == (_FLOAT,))
_TYPE_WORDS = {
    _INT: "an integer",
    _FLOAT: "a number",
    _STR: "a string",
    _BOOL: "true or false",
    "dict": "a dict",
    "epochs": "a list of epoch numbers",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == _INT:
        return isinstance(value, int)
    if kind == _FLOAT:
        return isinstance(value, (int, float))
    if kind == _STR:
        return isinstance(value, str)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "epochs":
        return isinstance(value, tuple) and all(_is_kind(v, _FLOAT) for v in value)
    raise AssertionError(kind)


def _check_type(name: str, value: Any) -> None:
    kinds, nullable = _FIELD_SPECS[name]
    if value is None and nullable:
        return
    if not any(_is_kind(value, k) for k in kinds):
        words = " or ".join(_TYPE_WORDS[k] for k in kinds) + (" or null" if nullable else "")
        raise ValueError(f"TrainConfig.{name} must be {words}, got {value!r} ({type(value).__name__})")


def _check_keys(keys: Any) -> None:
    known = list(_FIELD_SPECS)
    for key in keys:
        if key not in _FIELD_SPECS:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ValueError(f"unknown TrainConfig key {key!r}{hint}")


def _check_model_fits_dataset(model: str, dataset: str) -> None:
    """A 1-D (sequence) model needs a 1-D dataset and an image model an image dataset (ValueError)."""
    from taylorglo.train.data import dataset_info
    from taylorglo.train.models import SEQUENCE_MODELS, model_spatial_dims

    try:
        info = dataset_info(dataset)
    except ValueError:
        return  # an unknown name: train() raises, listing the known datasets
    have, need = model_spatial_dims(model), info.spatial_dims
    if have == need:
        return
    dims = (info.in_chans, info.image_size[-1]) if need == 1 else (info.in_chans, *info.image_size)
    kind = {1: "1-D sequences", 2: "images"}
    fix = {1: f"a 1-D model ({', '.join(SEQUENCE_MODELS)})", 2: "an image model (e.g. taylorglo_smallcnn)"}
    raise ValueError(
        f"TrainConfig.model {model!r} takes {kind[have]} but dataset {info.name!r} holds {kind[need]} "
        f"(N, {', '.join(map(str, dims))}); use {fix[need]}"
    )
