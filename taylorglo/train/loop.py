"""One candidate evaluation: train a model with a loss and report validation accuracy.

:func:`train` is the unit a loss search repeats hundreds of times, so it is built to be

- correct: fitness is the validation accuracy after the last epoch; the test split is read only
  when ``evaluate_test=True``;
- reproducible: python, numpy and torch are seeded from ``config.seed`` (and their global states
  restored afterwards, so a CMA-ES in the same process keeps its random stream); batch order and
  augmentation draw from a ``torch.Generator`` of that seed. Same seed, same thread count, CPU:
  bitwise identical results;
- robust: a non-finite training loss stops the run at once with status ``diverged``, validation
  accuracy under ``config.min_accuracy`` from epoch ``config.min_accuracy_epoch`` on stops it with
  ``below_threshold`` (and a run that ends at chance level gets it whatever its length, see
  :func:`train`), and an exception inside the training itself gives ``failed`` with the error
  text. Each keeps the numbers measured so far. Configuration mistakes (unknown keys, datasets,
  models, presets, a missing dataset) raise instead: they would fail every candidate alike;
- cheap: the data are in-memory tensors indexed directly (no DataLoader, no worker processes).
"""

from __future__ import annotations

import contextlib
import math
import platform
import random
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taylorglo.train.config import TrainConfig
from taylorglo.train.data import DatasetInfo, LoadedDataset, dataset_info, load_dataset, make_splits
from taylorglo.train.losses import LossSpec, build_loss
from taylorglo.train.models import create_model
from taylorglo.train.noise import LabelNoise, noisy_accuracy_floor, noisy_splits

__all__ = ["STATUSES", "TrainResult", "resolve_device", "train"]

STATUSES: tuple[str, ...] = ("ok", "diverged", "below_threshold", "failed")


@dataclass
class TrainResult:
    """The record of one training run.

    Attributes:
        status: ``ok``, ``diverged`` (non-finite training loss), ``below_threshold`` (validation
            accuracy under the floor, or a collapse: see :func:`train`) or ``failed`` (an exception
            during training; see ``error``).
        val_accuracy: validation accuracy in [0, 1] at the end of the run (the fitness; with
            ``restore_best``, at the best evaluated epoch, also for a run that stopped), else at the
            stop for ``diverged`` / ``below_threshold``; ``None`` if never measured.
        val_loss: the training loss evaluated on the validation split (same units as the loss).
        val_cross_entropy: mean cross-entropy on the validation split (comparable across losses).
        test_accuracy, test_loss: only when ``evaluate_test=True`` (and the weights are finite).
        train_loss: mean training loss over the last (partial) epoch.
        epochs: epochs run (fractional when ``max_steps`` ended an epoch early), ``steps``: optimizer
            steps. ``wall_time``: seconds for the whole call, data loading included.
        seed: the run's seed. ``loss``: the loss spec string. ``error``: ``Type: message`` for ``failed``
            (and the reason for ``diverged`` / ``below_threshold``). ``versions``: library versions and
            the device. ``history``: one dict per evaluated epoch. ``config``: the config as a dict.
        label_noise: ``None`` for clean labels, else the noise setting and what it did:
            ``kind``, ``rate``, ``seed``, ``clean_validation``, ``realized_rate`` (the fraction
            of training labels that differ from the clean ones), ``train_flipped``,
            ``val_realized_rate``, ``val_flipped`` and ``labels_sha256`` (a digest of the noisy
            labels; see :func:`taylorglo.train.noise.noisy_splits`). Test labels are never noisy.
        best_epoch: with ``restore_best``, the epoch whose weights the run ended with (its
            validation numbers are ``val_accuracy`` etc.; the test split is measured on them);
            ``None`` otherwise.

    ``to_dict`` writes non-finite numbers as ``None`` so the output is strict JSON.
    """

    status: str
    val_accuracy: Optional[float] = None
    val_loss: Optional[float] = None
    val_cross_entropy: Optional[float] = None
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    train_loss: Optional[float] = None
    epochs: float = 0.0
    steps: int = 0
    wall_time: float = 0.0
    seed: int = 0
    loss: str = "cross-entropy"
    error: Optional[str] = None
    versions: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    label_noise: Optional[dict] = None
    best_epoch: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainResult:
        known = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise ValueError(f"unknown TrainResult key(s) {unknown}; known keys: {sorted(known)}")
        if d.get("status") not in STATUSES:
            raise ValueError(f"TrainResult.status must be one of {list(STATUSES)}, got {d.get('status')!r}")
        return cls(**dict(d))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit unavailable device raises ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (use device='auto' or 'cpu')")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} requested but MPS is not available")
    return device


def _versions(device: torch.device) -> dict[str, Any]:
    import timm
    import torchvision

    import taylorglo

    out: dict[str, Any] = {
        "taylorglo": taylorglo.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "num_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


@contextlib.contextmanager
def _run_scope(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Seed everything for the run; restore global RNG states, thread count and cuDNN flags after."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    threads = torch.get_num_threads()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cuda_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
            if config.num_threads is not None and config.num_threads != threads:
                torch.set_num_threads(config.num_threads)
            if config.deterministic:
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            random.seed(config.seed)
            np.random.seed(config.seed % 2**32)
            torch.manual_seed(config.seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


class _Batcher:
    """Turns index tensors into normalized (and optionally augmented) device batches."""

    def __init__(
        self,
        info: DatasetInfo,
        images: torch.Tensor,
        labels: torch.Tensor,
        device: torch.device,
        channels_last: bool,
        augment: bool,
        generator: torch.Generator,
    ):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.device = device
        c = info.in_chans
        std = torch.tensor(info.std, dtype=torch.float32).view(1, c, 1, 1)
        mean = torch.tensor(info.mean, dtype=torch.float32).view(1, c, 1, 1)
        self.mul = (1.0 / (info.scale * std)).to(device)
        self.add = (-mean / std).to(device)
        self.channels_last = channels_last
        self.pad = info.crop_padding if augment else 0
        self.flip = info.flip and augment
        self.generator = generator

    def __len__(self) -> int:
        return self.labels.shape[0]

    def get(self, idx: torch.Tensor, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        x = self.images[idx]
        if train and (self.pad or self.flip):
            x = self._augment(x)
        x = x.float() * self.mul + self.add
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.generator  # CPU generator: the same draws on every device
        if self.pad:
            p = self.pad
            x = F.pad(x, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (n, 2), generator=g).to(x.device)
            rows = (off[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (off[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = x[
                torch.arange(n, device=x.device)[:, None, None, None],
                torch.arange(c, device=x.device)[None, :, None, None],
                rows,
                cols,
            ]
        if self.flip:
            mask = (torch.rand(n, generator=g) < 0.5).to(x.device)[:, None, None, None]
            x = torch.where(mask, x.flip(-1), x)
        return x


def train(
    config: Union[TrainConfig, Mapping[str, Any], None] = None,
    loss: Union[LossSpec, str, Mapping[str, Any]] = "cross-entropy",
    *,
    evaluate_test: bool = False,
    show_progress: bool = False,
) -> TrainResult:
    """Train ``config.model`` on ``config.dataset`` with ``loss`` and return a :class:`TrainResult`.

    Args:
        config: a TrainConfig, or a mapping for :meth:`TrainConfig.from_dict` (None: defaults).
        loss: a :class:`LossSpec`, a spec string (``cross-entropy``, ``preset:NAME``,
            ``params:v1,v2,...``) or a ``LossSpec.to_dict`` mapping.
        evaluate_test: also measure the test split (never used otherwise).
        show_progress: draw a tqdm progress bar on stderr.

    The accuracy floor (``config.min_accuracy``; ``None`` disables both rules):

    - from epoch ``config.min_accuracy_epoch`` on, an evaluated epoch under the floor stops the
      run with ``below_threshold`` (the original's early abort);
    - at the end of a run that took at least one step, whatever its length, a validation accuracy
      under the floor that is also at chance level (at most 1.5 / num_classes, the search's
      collapse rule) gives ``below_threshold``: a short training is not held to a floor meant
      for epoch ``min_accuracy_epoch``, but one that ends where an untrained model is has
      collapsed (e.g. a loss scaled by 1e6). A run of 0 steps measures the untrained model and
      keeps ``ok``.

    On noisy validation labels (``label_noise`` without ``clean_validation``) the floor is the
    accuracy there of a model whose clean accuracy is ``min_accuracy``: 0.15 becomes about 0.117 at
    60% symmetric noise over 10 classes, where the plain 0.15 stopped every training.

    Raises:
        ValueError: an invalid config, loss spec, dataset or model name.
        DatasetUnavailableError: the dataset is neither on disk nor downloadable.
    """
    start = time.perf_counter()
    cfg = TrainConfig.coerce(config)
    spec = LossSpec.coerce(loss)
    info = dataset_info(cfg.dataset)
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.download)
    splits = make_splits(
        len(data.train_labels),
        cfg.validation_size,
        cfg.split_seed,
        default_validation_size=info.validation_size,
        train_fraction=cfg.train_fraction,
        train_size=cfg.train_size,
    )
    n_train = len(splits.train)
    steps_per_epoch = n_train // cfg.batch_size if cfg.drop_last else math.ceil(n_train / cfg.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"drop_last with batch_size {cfg.batch_size} and only {n_train} training examples leaves no step per epoch"
        )
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    train_labels, val_labels = data.train_labels[splits.train], data.train_labels[splits.val]
    noise = None
    if cfg.label_noise is not None:  # a function of the data, split and noise seeds, never cfg.seed
        train_labels, val_labels, noise = noisy_splits(
            LabelNoise.from_dict(cfg.label_noise),
            train_labels,
            val_labels,
            info.num_classes,
            clean_validation=cfg.clean_validation,
        )

    with _run_scope(cfg, device):
        model = create_model(cfg.model, info.num_classes, info.in_chans, **cfg.model_kwargs)
        criterion = build_loss(spec, info.num_classes, default_label_smoothing=cfg.label_smoothing)
        result = TrainResult(
            status="ok",
            seed=cfg.seed,
            loss=str(spec),
            versions=_versions(device),
            config=cfg.to_dict(),
            label_noise=noise,
        )
        run = _Run(
            cfg,
            info,
            data,
            splits,
            (train_labels, val_labels),
            model,
            criterion,
            device,
            steps_per_epoch,
            total_steps,
            result,
        )
        try:
            run.fit(show_progress)
            if evaluate_test and run._weights_finite():  # NaN weights: test numbers would mean nothing
                run.evaluate_test()
        except Exception as e:  # noqa: BLE001 - a failed training is a result, not a crash
            result.status = "failed"
            # first line: the error; then the innermost frames, for the journal
            result.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-6)}"
        result.steps = run.step
        result.epochs = round(run.step / steps_per_epoch, 6)
    result.wall_time = time.perf_counter() - start
    return result


def _accuracy_floor(cfg: TrainConfig, info: DatasetInfo, noise: Optional[dict]) -> Optional[float]:
    """The validation accuracy under which a run stops: ``min_accuracy`` is a clean accuracy, so
    on noisy validation labels it becomes what such a model scores there (see
    :func:`~taylorglo.train.noise.noisy_accuracy_floor`, with the realized validation noise rate)."""
    if cfg.min_accuracy is None:
        return None
    if noise is None or noise["clean_validation"] or not noise["val_flipped"]:
        return cfg.min_accuracy
    return noisy_accuracy_floor(cfg.min_accuracy, noise["val_realized_rate"], info.num_classes)


class _Run:
    """The state of one training; :meth:`fit` fills ``result`` as it goes."""

    def __init__(
        self,
        cfg: TrainConfig,
        info: DatasetInfo,
        data: LoadedDataset,
        splits,
        labels,
        model: nn.Module,
        criterion: nn.Module,
        device: torch.device,
        steps_per_epoch: int,
        total_steps: int,
        result: TrainResult,
    ):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        self.cfg, self.info, self.data, self.device, self.result = cfg, info, data, device, result
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.floor = _accuracy_floor(cfg, info, result.label_noise)
        cuda = device.type == "cuda"
        self.amp = cfg.amp if cfg.amp is not None else cuda
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else cuda
        augment = cfg.augment if cfg.augment is not None else info.augments
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_data = _Batcher(
            info,
            data.train_images[splits.train],
            labels[0],
            device,
            self.channels_last,
            augment,
            self.generator,
        )
        self.val_data = _Batcher(
            info,
            data.train_images[splits.val],
            labels[1],
            device,
            self.channels_last,
            False,
            self.generator,
        )
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if cfg.compile else model
        self.criterion = criterion.to(device)
        self.has_progress = bool(getattr(criterion, "has_progress", False))
        opt = {"sgd": "momentum", "nesterov": "sgd"}.get(cfg.optimizer, cfg.optimizer)
        kwargs = {"momentum": cfg.momentum} if opt in ("momentum", "sgd") else {}
        self.optimizer = create_optimizer_v2(
            model, opt=opt, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs
        )
        sched = {"step": "multistep"}.get(cfg.schedule, cfg.schedule)
        spe = steps_per_epoch
        # The schedule runs in optimizer steps. timm's multistep applies milestone m from step m - 1
        # (a kept historical convention), so m = e * spe + 1 decays exactly after e epochs.
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched=sched,
            num_epochs=max(total_steps, 1),
            decay_milestones=[round(e * spe) + 1 for e in cfg.decay_epochs],
            decay_rate=cfg.decay_gamma,
            min_lr=cfg.min_lr,
            warmup_lr=cfg.warmup_lr,
            warmup_epochs=round(cfg.warmup_epochs * spe),
            step_on_epochs=False,
            updates_per_epoch=1,
        )
        self.step = 0
        self._best: Optional[tuple[dict, dict]] = None  # restore_best: (history entry, weights)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _set_progress(self, t: float) -> None:
        if self.has_progress:
            self.criterion.set_progress(t)

    def fit(self, show_progress: bool) -> None:
        cfg, res = self.cfg, self.result
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps,
            disable=not show_progress,
            file=sys.stderr,
            unit="step",
            desc=f"{cfg.model} {cfg.dataset}",
            leave=False,
            dynamic_ncols=True,
        )
        try:
            self._fit(bar)
        finally:
            bar.close()
        if res.status == "ok" and (not res.history or res.history[-1]["steps"] != self.step):
            self._evaluate_val()  # e.g. epochs=0: the untrained model
        if self._best is not None and res.status in ("ok", "below_threshold", "diverged"):
            self._restore_best()  # a stopped run too: early stopping keeps the best epoch's weights
        if res.status == "ok":
            self._check_collapse()

    def _check_collapse(self) -> None:
        """``below_threshold`` for a run that ended under the floor at chance level (see ``train``)."""
        cfg, res = self.cfg, self.result
        if self.floor is None or self.step == 0 or res.val_accuracy is None:
            return
        chance = 1.5 / self.info.num_classes
        if res.val_accuracy < self.floor and res.val_accuracy <= chance:
            res.status = "below_threshold"
            res.error = (
                f"validation accuracy {res.val_accuracy:.4f} at the end of training is at chance level "
                f"(<= 1.5 / {self.info.num_classes} classes) and < {self._floor_words()}: "
                f"a collapse, whatever the length (min_accuracy_epoch {cfg.min_accuracy_epoch} only "
                "delays the early stop)"
            )

    def _fit(self, bar) -> None:
        cfg, res = self.cfg, self.result
        n, bs = len(self.train_data), cfg.batch_size
        epoch = 0
        while self.step < self.total_steps:
            self.model.train()
            perm = torch.randperm(n, generator=self.generator)
            loss_sum, loss_count = torch.zeros((), device=self.device), 0
            for i in range(self.steps_per_epoch):
                if self.step >= self.total_steps:
                    break
                x, y = self.train_data.get(perm[i * bs : (i + 1) * bs], train=True)
                self._set_progress(self.step / self.total_steps)
                self.scheduler.step_update(num_updates=self.step)
                with self._autocast():
                    logits = self.model(x)
                loss = self.criterion(logits.float(), y)
                if not torch.isfinite(loss).item():
                    res.status = "diverged"
                    res.error = (
                        f"non-finite training loss ({loss.item()}) at step {self.step} (epoch {epoch + 1})"
                    )
                    res.train_loss = float(loss.item())
                    if self._weights_finite():  # else keep the last epoch's numbers
                        self._evaluate_val(epoch + 1)
                    return
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                loss_sum += loss.detach()
                loss_count += 1
                bar.update(1)
            epoch += 1
            res.train_loss = float(loss_sum) / max(loss_count, 1)
            last = self.step >= self.total_steps
            if epoch % cfg.eval_every == 0 or last:
                self._evaluate_val(epoch)
                bar.set_postfix(loss=f"{res.train_loss:.4g}", val_acc=f"{res.val_accuracy:.4f}")
                if (
                    self.floor is not None
                    and epoch >= cfg.min_accuracy_epoch
                    and res.val_accuracy < self.floor
                ):
                    res.status = "below_threshold"
                    res.error = (
                        f"validation accuracy {res.val_accuracy:.4f} < {self._floor_words()} "
                        f"after epoch {epoch} (min_accuracy_epoch {cfg.min_accuracy_epoch})"
                    )
                    return

    def _floor_words(self) -> str:
        """The floor for an error message: ``min_accuracy X``, and what it is on noisy labels."""
        words = f"min_accuracy {self.cfg.min_accuracy}"
        if self.floor != self.cfg.min_accuracy:
            words += f" (clean; {self.floor:.4f} on this noisy validation split)"
        return words

    def _weights_finite(self) -> bool:
        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    @torch.inference_mode()
    def _evaluate(self, data: _Batcher) -> tuple[float, float, float]:
        """(accuracy, mean training loss, mean cross-entropy) of the model on ``data``."""
        self.model.eval()
        n = len(data)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        ce_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for i in range(0, n, self.cfg.eval_batch_size):
            x, y = data.get(torch.arange(i, min(i + self.cfg.eval_batch_size, n)))
            with self._autocast():
                logits = self.model(x)
            logits = logits.float()
            correct += (logits.argmax(1) == y).sum()
            loss_sum += self.criterion(logits, y).double() * len(y)
            ce_sum += F.cross_entropy(logits, y, reduction="sum").double()
        self.model.train()
        return correct.item() / n, loss_sum.item() / n, ce_sum.item() / n

    def _evaluate_val(self, epoch: Optional[int] = None) -> None:
        self._set_progress(min(self.step / max(self.total_steps, 1), 1.0))
        res = self.result
        res.val_accuracy, res.val_loss, res.val_cross_entropy = self._evaluate(self.val_data)
        entry = {
            "epoch": epoch if epoch is not None else round(self.step / self.steps_per_epoch, 6),
            "steps": self.step,
            "train_loss": res.train_loss,
            "val_accuracy": res.val_accuracy,
            "val_loss": res.val_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        res.history.append(entry)
        if self.cfg.restore_best and (self._best is None or res.val_accuracy > self._best[0]["val_accuracy"]):
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._best = (dict(entry, val_cross_entropy=res.val_cross_entropy), weights)

    def _restore_best(self) -> None:
        """``restore_best``: load the weights of the first evaluation with the best validation
        accuracy; the result's validation numbers become that evaluation's (``best_epoch`` says which)."""
        entry, weights = self._best
        self.model.load_state_dict(weights)
        res = self.result
        res.val_accuracy, res.val_loss = entry["val_accuracy"], entry["val_loss"]
        res.val_cross_entropy = entry["val_cross_entropy"]
        res.best_epoch = entry["epoch"]
        if entry["steps"] != self.step:
            self._set_progress(min(entry["steps"] / max(self.total_steps, 1), 1.0))  # the test sees that t

    def evaluate_test(self) -> None:
        test = _Batcher(
            self.info,
            self.data.test_images,
            self.data.test_labels,
            self.device,
            self.channels_last,
            False,
            self.generator,
        )
        self.result.test_accuracy, self.result.test_loss, _ = self._evaluate(test)
