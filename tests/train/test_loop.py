import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

import taylorglo.train.loop as loop
from taylorglo.polynomial import TaylorPolynomial
from taylorglo.train import STATUSES, LossSpec, TrainConfig, TrainResult, train
from taylorglo.train.data import LoadedDataset, load_dataset

FAST = TrainConfig(dataset="digits", epochs=2)
CE_TAYLOR3 = LossSpec.taylor(TaylorPolynomial.cross_entropy(3).vector)


def test_cross_entropy_on_digits_is_far_above_chance():
    result = train(FAST.replace(epochs=4))
    assert result.status == "ok" and result.error is None
    assert result.val_accuracy > 0.8
    assert result.steps == 4 * math.ceil(1097 / 128) and result.epochs == 4.0
    assert result.test_accuracy is None and result.loss == "cross-entropy"
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.wall_time > 0 and result.versions["torch"] == torch.__version__


def test_cross_entropy_taylor_approximation_trains_on_digits():
    result = train(TrainConfig(min_accuracy=None), CE_TAYLOR3)
    assert result.status == "ok"
    assert result.val_accuracy > 0.9
    assert result.loss == str(CE_TAYLOR3)


def test_same_seed_gives_identical_results_and_different_seeds_differ():
    a = train(FAST.replace(seed=3))
    b = train(FAST.replace(seed=3))
    c = train(FAST.replace(seed=4))
    for key in ("val_accuracy", "val_loss", "val_cross_entropy", "train_loss", "steps"):
        assert getattr(a, key) == getattr(b, key), key  # bitwise
    assert a.history == b.history
    assert (c.val_loss, c.train_loss) != (a.val_loss, a.train_loss)


def test_same_seed_is_reproducible_with_augmentation_and_a_time_varying_loss():
    cfg = FAST.replace(epochs=1, augment=False, max_steps=4, min_accuracy=None)  # 4 steps: still at chance
    spec = LossSpec.taylor(
        [0.0, -1.0, 0.5, 1.0, 0.0, 0.0, 0.5, 0.5, 0.1, 0.0, 0.2, 0.0, 0.0], variables=("x", "y", "t")
    )
    a, b = train(cfg, spec), train(cfg, spec)
    assert a.status == "ok" and (a.val_loss, a.train_loss) == (b.val_loss, b.train_loss)


def test_training_leaves_global_random_states_as_they_were():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    train(FAST.replace(epochs=1, max_steps=2))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_huge_parameters_end_as_diverged_not_an_exception():
    result = train(FAST.replace(epochs=3), LossSpec.taylor([3e38] * 6 + [0.5, 0.5]))
    assert result.status == "diverged"
    assert "non-finite" in result.error
    assert result.steps == 0 and result.val_accuracy is not None  # the untrained model, still finite


class _NaNAfter(nn.Module):
    """Cross-entropy that turns NaN on its ``n``-th training call."""

    def __init__(self, n):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits, target):
        loss = nn.functional.cross_entropy(logits, target)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls > self.n:
                return loss * float("nan")
        return loss


def test_nan_loss_stops_at_once_with_partial_numbers(monkeypatch):
    monkeypatch.setattr(loop, "build_loss", lambda spec, n, **kw: _NaNAfter(12))
    result = train(FAST.replace(epochs=5))
    assert result.status == "diverged"
    assert result.steps == 12  # the NaN step is not taken
    assert 1.0 < result.epochs < 2.0
    assert result.val_accuracy is not None and math.isfinite(result.val_loss)
    assert result.history[0]["epoch"] == 1 and result.history[-1]["steps"] == 12


def test_bad_loss_is_below_threshold_after_the_configured_epoch():
    anti = LossSpec.taylor([-v for v in CE_TAYLOR3.params[:6]] + list(CE_TAYLOR3.params[6:]))
    result = train(FAST.replace(epochs=4, min_accuracy=0.15, min_accuracy_epoch=2), anti)
    assert result.status == "below_threshold"
    assert result.epochs == 2.0 and len(result.history) == 2
    assert result.val_accuracy < 0.15 and "min_accuracy" in result.error
    # before the configured epoch the floor does not stop the run; its end at chance is a collapse
    early = train(FAST.replace(epochs=1, min_accuracy=0.15, min_accuracy_epoch=2), anti)
    assert early.status == "below_threshold" and early.val_accuracy < 0.15
    assert early.epochs == 1.0 and "chance level" in early.error


def test_threshold_can_be_disabled():
    anti = LossSpec.taylor([-v for v in CE_TAYLOR3.params[:6]] + list(CE_TAYLOR3.params[6:]))
    result = train(FAST.replace(min_accuracy=None, min_accuracy_epoch=1), anti)
    assert result.status == "ok"


class _Boom(nn.Module):
    def forward(self, logits, target):
        raise RuntimeError("kernel exploded")


def test_exception_during_training_is_a_failed_result(monkeypatch):
    monkeypatch.setattr(loop, "build_loss", lambda spec, n, **kw: _Boom())
    result = train(FAST)
    assert result.status == "failed"
    assert result.error.splitlines()[0] == "RuntimeError: kernel exploded"
    assert result.steps == 0


@pytest.mark.parametrize(
    "config, loss, match",
    [
        ({"epochs": 1, "modle": "x"}, "cross-entropy", "modle"),
        ({"epochs": 1, "model": "no_such_model"}, "cross-entropy", "unknown model"),
        ({"epochs": 1, "dataset": "imagenet"}, "cross-entropy", "unknown dataset"),
        ({"epochs": 1}, "params:1,2", "cannot have 2 numbers"),
        (
            {"epochs": 1, "device": "cuda:7"} if not torch.cuda.is_available() else {"device": "gpu"},
            "cross-entropy",
            "device",
        ),
    ],
)
def test_configuration_errors_raise(config, loss, match):
    with pytest.raises(ValueError, match=match):
        train(config, loss)


class _Untouchable:
    """Stands in for the test split: any use raises."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was touched ({name})")

    def __getitem__(self, item):
        raise AssertionError("the test split was touched")

    def __len__(self):
        raise AssertionError("the test split was touched")


def test_test_split_is_only_touched_when_asked(monkeypatch):
    real = load_dataset("digits")
    guarded = LoadedDataset(real.info, real.train_images, real.train_labels, _Untouchable(), _Untouchable())
    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: guarded)
    assert train(FAST.replace(epochs=1)).status == "ok"
    asked = train(FAST.replace(epochs=1), evaluate_test=True)
    assert asked.status == "failed" and "test split was touched" in asked.error


def test_evaluate_test_reports_test_accuracy():
    result = train(FAST.replace(epochs=3), evaluate_test=True)
    assert result.status == "ok" and 0.5 < result.test_accuracy <= 1.0 and result.test_loss > 0


def test_validation_never_overlaps_training_batches(monkeypatch):
    seen = {"train": set(), "val": set()}
    real_get = loop._Batcher.get

    def spy(self, idx, train=False):
        key = "train" if self.images.shape[0] == 1097 else "val"
        x, y = real_get(self, idx, train)
        seen[key].update(map(lambda r: r.tobytes(), self.images[idx].numpy()))
        return x, y

    monkeypatch.setattr(loop._Batcher, "get", spy)
    train(FAST.replace(epochs=1))
    assert len(seen["val"]) > 250 and len(seen["train"]) > 900
    # digits has a few duplicate images across the split; distinct training images never fill validation
    assert len(seen["train"] & seen["val"]) < 10


def test_max_steps_caps_the_run_and_the_schedule():
    result = train(FAST.replace(epochs=5, max_steps=13))
    assert result.steps == 13 and result.epochs == pytest.approx(13 / 9, abs=1e-6)
    assert result.history[-1]["steps"] == 13


def test_epochs_zero_evaluates_the_untrained_model():
    result = train(FAST.replace(epochs=0))
    assert result.status == "ok" and result.steps == 0 and 0.0 <= result.val_accuracy < 0.5


def test_train_fraction_reduces_the_steps():
    result = train(FAST.replace(epochs=1, train_fraction=0.25))
    assert result.steps == math.ceil(math.ceil(0.25 * 1097) / 128)


class _Recorder(nn.Module):
    has_progress = True

    def __init__(self):
        super().__init__()
        self.t = None
        self.seen = []

    def set_progress(self, t):
        self.t = t

    def forward(self, logits, target):
        if torch.is_grad_enabled():
            self.seen.append(self.t)
        return nn.functional.cross_entropy(logits, target)


def test_time_varying_loss_gets_step_over_total_steps(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(loop, "build_loss", lambda spec, n, **kw: recorder)
    result = train(FAST.replace(epochs=2))
    total = result.steps
    assert total == 18
    assert recorder.seen == [k / total for k in range(total)]


def test_schedules_and_optimizers_run(monkeypatch):
    for overrides in (
        {"schedule": "step", "decay_epochs": [1], "decay_gamma": 0.1},
        {"schedule": "constant", "warmup_epochs": 1.0, "optimizer": "adamw", "lr": 1e-3},
        {"optimizer": "nesterov"},
    ):
        result = train(FAST.replace(**overrides))
        assert result.status == "ok", overrides
    step = train(FAST.replace(schedule="step", decay_epochs=(1,), lr=0.1))
    assert step.history[0]["lr"] == pytest.approx(0.1) and step.history[1]["lr"] == pytest.approx(0.01)


def test_result_round_trips_as_strict_json():
    result = train(FAST.replace(epochs=1))
    text = json.dumps(result.to_dict(), allow_nan=False)
    again = TrainResult.from_dict(json.loads(text))
    assert again == result
    nan = TrainResult(status="diverged", val_loss=float("nan"))
    assert nan.to_dict()["val_loss"] is None
    with pytest.raises(ValueError, match="status"):
        TrainResult.from_dict({"status": "great"})
    assert set(STATUSES) == {"ok", "diverged", "below_threshold", "failed"}


def test_dict_config_and_dict_loss_are_accepted():
    result = train(
        {"epochs": 1, "max_steps": 2, "min_accuracy": None}, {"kind": "cross-entropy", "label_smoothing": 0.1}
    )
    assert result.status == "ok" and result.loss == "cross-entropy;label_smoothing=0.1"
    assert result.config["max_steps"] == 2


def test_num_threads_applies_during_the_run_only(monkeypatch):
    seen = []
    real_fit = loop._Run.fit

    def spy(self, show_progress):
        seen.append(torch.get_num_threads())
        return real_fit(self, show_progress)

    monkeypatch.setattr(loop._Run, "fit", spy)
    torch.set_num_threads(1)
    result = train(FAST.replace(max_steps=1, num_threads=2))
    assert seen == [2] and torch.get_num_threads() == 1
    assert result.versions["num_threads"] == 2


def test_bf16_autocast_and_channels_last_run_on_cpu():
    result = train(FAST.replace(max_steps=3, amp=True, channels_last=True, min_accuracy=None))
    assert result.status == "ok" and math.isfinite(result.val_loss)


def test_restore_best_ends_on_the_weights_of_the_best_validation_epoch():
    # a constant schedule: the first k epochs of a longer run are the k-epoch run, step for step
    cfg = TrainConfig(dataset="digits", epochs=4, schedule="constant", lr=0.5, min_accuracy=None)
    last = train(cfg, evaluate_test=True)
    best = train(cfg.replace(restore_best=True), evaluate_test=True)
    accs = [h["val_accuracy"] for h in best.history]
    assert accs == [h["val_accuracy"] for h in last.history]  # the same training
    assert best.best_epoch == 1 + accs.index(max(accs)) < 4 and last.best_epoch is None
    assert best.val_accuracy == max(accs) > last.val_accuracy
    assert best.epochs == 4.0  # every epoch trains; only the weights at the end differ
    prefix = train(cfg.replace(epochs=best.best_epoch), evaluate_test=True)
    assert (best.test_accuracy, best.test_loss) == (prefix.test_accuracy, prefix.test_loss)
    assert best.test_accuracy != last.test_accuracy
    assert TrainResult.from_dict(json.loads(json.dumps(best.to_dict()))).best_epoch == best.best_epoch


def test_restore_best_keeps_the_best_epoch_of_a_run_the_floor_stopped():
    # the floor (0.999 from epoch 3) stops the run after epoch 3; early stopping still ends on the
    # best of its evaluated epochs, whose weights equal those of a run cut there (constant schedule)
    cfg = TrainConfig(dataset="digits", epochs=4, schedule="constant", lr=0.5, min_accuracy=None)
    floor = {"min_accuracy": 0.999, "min_accuracy_epoch": 3}
    plain = train(cfg.replace(**floor), evaluate_test=True)
    best = train(cfg.replace(restore_best=True, **floor), evaluate_test=True)
    assert plain.status == best.status == "below_threshold" and best.epochs == plain.epochs == 3.0
    accs = [h["val_accuracy"] for h in best.history]
    assert accs == [h["val_accuracy"] for h in plain.history]
    assert best.best_epoch == 1 + accs.index(max(accs)) and best.val_accuracy == max(accs)
    assert plain.best_epoch is None and plain.val_accuracy == accs[-1]
    prefix = train(cfg.replace(epochs=best.best_epoch), evaluate_test=True)
    assert (best.test_accuracy, best.test_loss) == (prefix.test_accuracy, prefix.test_loss)
