import dataclasses
import json

import pytest

from taylorglo.train import TrainConfig
from taylorglo.train.config import _FIELD_SPECS


def test_every_field_has_a_type_spec():
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(_FIELD_SPECS)


def test_defaults_train_the_small_cnn_on_digits():
    cfg = TrainConfig()
    assert (cfg.dataset, cfg.model, cfg.optimizer, cfg.batch_size) == (
        "digits",
        "taylorglo_smallcnn",
        "sgd",
        128,
    )
    assert (cfg.split_seed, cfg.min_accuracy, cfg.min_accuracy_epoch, cfg.momentum) == (42, 0.15, 10, 0.9)


def test_to_dict_from_dict_round_trip_through_json():
    cfg = TrainConfig(
        dataset="mnist-5k",
        schedule="step",
        decay_epochs=(3, 6),
        validation_size=0.2,
        model_kwargs={"drop_rate": 0.1},
        max_steps=50,
        amp=False,
    )
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.decay_epochs == (3, 6)


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key 'epoch'.*'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="'zzz'"):
        TrainConfig.from_dict({"zzz": 3})


def test_replace_validates_and_names_unknown_keys():
    cfg = TrainConfig()
    assert cfg.replace(epochs=3).epochs == 3
    assert cfg.epochs == 10  # the original is unchanged
    with pytest.raises(ValueError, match="'learning_rate'"):
        cfg.replace(learning_rate=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        cfg.replace(batch_size=0)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("epochs", "10", r"TrainConfig.epochs must be an integer"),
        ("epochs", 2.5, r"TrainConfig.epochs must be an integer"),
        ("epochs", True, r"TrainConfig.epochs must be an integer"),
        ("lr", "fast", r"TrainConfig.lr must be a number"),
        ("compile", 1, r"TrainConfig.compile must be true or false"),
        ("max_steps", "x", r"TrainConfig.max_steps must be an integer or null"),
        ("decay_epochs", "5", r"decay_epochs must be a list"),
        ("model_kwargs", [], r"model_kwargs must be a dict"),
    ],
)
def test_wrong_types_are_named(key, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "exp"}, "schedule"),
        ({"momentum": 1.0}, "momentum"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"train_fraction": 0.5, "train_size": 100}, "not both"),
        ({"validation_size": 1.5}, "validation_size"),
        ({"validation_size": 0}, "validation_size"),
        ({"decay_epochs": [5, 3], "schedule": "step"}, "decay_epochs"),
        ({"decay_epochs": [5]}, "schedule is 'cosine'"),
        ({"min_accuracy": 1.5}, "min_accuracy"),
        ({"device": "gpu"}, "device"),
        ({"model_kwargs": {"num_classes": 3}}, "num_classes"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
    ],
)
def test_invalid_values_raise_naming_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


def test_ints_are_accepted_for_floats_and_stored_as_floats():
    cfg = TrainConfig(lr=1, weight_decay=0)
    assert isinstance(cfg.lr, float) and isinstance(cfg.weight_decay, float)
    assert cfg.to_dict()["lr"] == 1.0


def test_coerce_accepts_config_mapping_and_none():
    cfg = TrainConfig(epochs=2)
    assert TrainConfig.coerce(cfg) is cfg
    assert TrainConfig.coerce({"epochs": 2}) == cfg
    assert TrainConfig.coerce(None) == TrainConfig()
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_dict([("epochs", 2)])
