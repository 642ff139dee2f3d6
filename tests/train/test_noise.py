"""Label noise: the pure flip function, its config and command line, and its effect on a training."""

import json
import math

import pytest
import torch

from taylorglo.polynomial import TaylorPolynomial
from taylorglo.train import LossSpec, TrainConfig, TrainResult, train
from taylorglo.train.cli import build_parser, config_from_args
from taylorglo.train.noise import LabelNoise, flip_labels, noisy_accuracy_floor, noisy_splits

C = 10


def _labels(n=2000, seed=0):
    return torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize(
    ("n", "rate", "flipped"), [(2000, 0.4, 800), (1097, 0.1, 110), (5, 0.5, 3), (7, 0.0, 0)]
)
def test_exactly_round_rate_times_n_labels_change_each_to_another_class(kind, n, rate, flipped):
    clean = _labels(n)
    before = clean.clone()
    noisy = flip_labels(clean, C, kind, rate, seed=1)
    assert torch.equal(clean, before)  # the input is not modified
    assert noisy.dtype == torch.int64 and noisy.shape == clean.shape
    assert int((noisy != clean).sum()) == flipped
    assert bool(((noisy >= 0) & (noisy < C)).all())


def test_rate_one_flips_every_label():
    clean = _labels(300)
    assert bool((flip_labels(clean, C, "symmetric", 1.0, 0) != clean).all())
    assert torch.equal(flip_labels(clean, C, "pairflip", 1.0, 0), (clean + 1) % C)


def test_pairflip_sends_class_c_to_c_plus_one_mod_c():
    clean = torch.arange(C).repeat(50)
    noisy = flip_labels(clean, C, "pairflip", 0.5, seed=3)
    changed = noisy != clean
    assert int(changed.sum()) == 250
    assert torch.equal(noisy[changed], (clean[changed] + 1) % C)
    assert bool((noisy[clean == C - 1][changed[clean == C - 1]] == 0).all())  # wraps around


def test_symmetric_flips_spread_uniformly_over_the_other_classes():
    clean = torch.zeros(45_000, dtype=torch.int64)
    noisy = flip_labels(clean, C, "symmetric", 0.6, seed=0)
    counts = torch.bincount(noisy, minlength=C)
    assert counts[0] == 45_000 - 27_000
    expected = 27_000 / (C - 1)
    # each other class gets 3,000 +- a few standard deviations (sd ~ 52)
    assert bool(((counts[1:] - expected).abs() < 250).all()), counts.tolist()


def test_flips_are_a_pure_function_of_labels_and_noise_seed_with_independent_streams():
    clean = _labels()
    a = flip_labels(clean, C, "symmetric", 0.4, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    b = flip_labels(clean, C, "symmetric", 0.4, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, flip_labels(clean, C, "symmetric", 0.4, seed=8))
    val = flip_labels(clean, C, "symmetric", 0.4, seed=7, stream="validation")
    assert not torch.equal((a != clean), (val != clean))  # another subset for the other split


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": "uniform"}, ["label_noise.kind", "'uniform'", "symmetric", "pairflip"]),
        ({"rate": 1.5}, ["label_noise.rate", "[0, 1]", "1.5"]),
        ({"rate": -0.1}, ["label_noise.rate", "-0.1"]),
        ({"seed": -2}, ["label_noise.seed", "-2"]),
        ({"num_classes": 1}, ["num_classes", "1"]),
        ({"stream": "test"}, ["stream", "'test'", "validation"]),
        ({"labels": torch.tensor([0, 10])}, ["[0, 10)", "[0, 10]"]),
    ],
)
def test_bad_arguments_are_rejected_naming_the_value(kwargs, words):
    args = {"labels": _labels(20), "num_classes": C, "kind": "symmetric", "rate": 0.2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        flip_labels(args.pop("labels"), args.pop("num_classes"), **args)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_label_noise_reads_strings_and_dicts_and_writes_a_dict():
    assert LabelNoise.parse("symmetric:0.4") == LabelNoise("symmetric", 0.4, 0)
    assert LabelNoise.parse(" PairFlip : 0.2 : 5 ") == LabelNoise("pairflip", 0.2, 5)
    noise = LabelNoise.coerce({"kind": "pairflip", "rate": 0.2, "seed": 5})
    assert noise.to_dict() == {"kind": "pairflip", "rate": 0.2, "seed": 5}
    assert LabelNoise.parse(str(noise)) == noise
    for text, word in [("symmetric", "KIND:RATE"), ("symmetric:x", "'x'"), ("symmetric:0.1:1.5", "'1.5'")]:
        with pytest.raises(ValueError, match="label_noise") as err:
            LabelNoise.parse(text)
        assert word in str(err.value)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sed'\]; known keys: kind, rate, seed"):
        LabelNoise.from_dict({"kind": "symmetric", "rate": 0.1, "sed": 1})
    with pytest.raises(ValueError, match="needs rate"):
        LabelNoise.from_dict({"kind": "symmetric"})


def test_noisy_splits_keep_validation_clean_on_request_and_record_the_realized_rates():
    train_labels, val_labels = _labels(1000, 1), _labels(300, 2)
    noise = LabelNoise("symmetric", 0.25, 4)
    t, v, record = noisy_splits(noise, train_labels, val_labels, C)
    assert record["realized_rate"] == 0.25 and record["train_flipped"] == 250
    assert record["val_flipped"] == int((v != val_labels).sum()) == 75
    t2, v2, clean_record = noisy_splits(noise, train_labels, val_labels, C, clean_validation=True)
    assert torch.equal(t2, t) and torch.equal(v2, val_labels)  # the same training noise either way
    assert clean_record["clean_validation"] is True and clean_record["val_realized_rate"] == 0.0
    assert clean_record["labels_sha256"] != record["labels_sha256"]


# ----------------------------------------------------------------------------------------------
def test_train_config_validates_label_noise_naming_the_field():
    cfg = TrainConfig(label_noise="symmetric:0.4")
    assert cfg.label_noise == {"kind": "symmetric", "rate": 0.4, "seed": 0} and cfg.clean_validation is False
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert TrainConfig().label_noise is None
    with pytest.raises(
        ValueError,
        match=r"TrainConfig\.label_noise\.kind must be one of \['symmetric', 'pairflip'\], got 'gaussian'",
    ):
        TrainConfig(label_noise={"kind": "gaussian", "rate": 0.2})
    with pytest.raises(
        ValueError, match=r"TrainConfig\.label_noise\.rate must be a number in \[0, 1\], got 2"
    ):
        TrainConfig.from_dict({"label_noise": {"kind": "pairflip", "rate": 2}})
    with pytest.raises(ValueError, match=r"TrainConfig\.label_noise must be a dict or a string or null"):
        TrainConfig(label_noise=0.4)
    with pytest.raises(ValueError, match=r"TrainConfig\.clean_validation must be true or false"):
        TrainConfig(clean_validation="yes")


def test_the_command_line_sets_label_noise_and_clean_validation():
    def cfg(*argv):
        return TrainConfig.from_dict(config_from_args(build_parser().parse_args(list(argv))))

    c = cfg("--label-noise", "pairflip:0.2:5", "--clean-validation")
    assert c.label_noise == {"kind": "pairflip", "rate": 0.2, "seed": 5} and c.clean_validation is True
    off = cfg("--config-json", '{"label_noise": {"kind": "symmetric", "rate": 0.4}}', "--label-noise", "none")
    assert off.label_noise is None
    assert (
        cfg("--set", 'label_noise={"kind": "symmetric", "rate": 0.6, "seed": 2}').label_noise["rate"] == 0.6
    )


# ----------------------------------------------------------------------------------------------
FAST = TrainConfig(dataset="digits", epochs=1, max_steps=1, min_accuracy=None)


def test_a_noisy_training_reports_the_realized_rate_independent_of_the_training_seed():
    noisy = FAST.replace(label_noise={"kind": "symmetric", "rate": 0.4, "seed": 1})
    a = train(noisy)
    assert a.status == "ok"
    n_train, n_val = 1797 - 400 - 300, 300
    assert a.label_noise["realized_rate"] == round(0.4 * n_train) / n_train
    assert a.label_noise["val_flipped"] == round(0.4 * n_val) and a.label_noise["clean_validation"] is False
    as_json = json.loads(json.dumps(a.to_dict()))
    assert as_json["label_noise"]["realized_rate"] == a.label_noise["realized_rate"]
    assert TrainResult.from_dict(as_json).label_noise == a.label_noise
    # other training seeds see the same labels; other noise or split seeds do not
    assert train(noisy.replace(seed=5)).label_noise == a.label_noise
    other_noise = train(noisy.replace(label_noise={"kind": "symmetric", "rate": 0.4, "seed": 2}))
    other_split = train(noisy.replace(split_seed=7))
    assert len({a.label_noise["labels_sha256"], other_noise.label_noise["labels_sha256"]}) == 2
    assert other_split.label_noise["labels_sha256"] != a.label_noise["labels_sha256"]
    assert train(FAST).label_noise is None


def test_the_model_learns_the_noisy_labels_while_the_test_split_stays_clean():
    # Every training label shifted by one: the model learns c -> c + 1. Noisy validation agrees
    # with it, clean validation and the (always clean) test split do not.
    cfg = TrainConfig(dataset="digits", epochs=4, label_noise={"kind": "pairflip", "rate": 1.0})
    shifted = train(cfg, evaluate_test=True)
    assert shifted.status == "ok" and shifted.label_noise["realized_rate"] == 1.0
    assert shifted.val_accuracy > 0.8
    assert shifted.test_accuracy < 0.2
    clean_val = train(cfg.replace(clean_validation=True), evaluate_test=True)
    assert clean_val.label_noise["val_realized_rate"] == 0.0
    assert clean_val.val_accuracy < 0.2
    assert math.isclose(clean_val.test_accuracy, shifted.test_accuracy)  # same training, same model


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize(("accuracy", "rate"), [(0.15, 0.6), (0.9, 0.4), (0.5, 0.2), (0.3, 0.0)])
def test_the_noisy_floor_is_what_a_model_of_that_clean_accuracy_scores_on_noisy_labels(kind, accuracy, rate):
    n = 200_000
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, C, (n,), generator=g)
    right = torch.rand(n, generator=g) < accuracy
    wrong = (clean + torch.randint(1, C, (n,), generator=g)) % C  # mistakes spread evenly
    predictions = torch.where(right, clean, wrong)
    noisy = flip_labels(clean, C, kind, rate, seed=4)
    measured = float((predictions == noisy).double().mean())
    assert math.isclose(measured, noisy_accuracy_floor(accuracy, rate, C), abs_tol=0.004)
    assert noisy_accuracy_floor(accuracy, 0.0, C) == accuracy


def test_min_accuracy_is_a_clean_accuracy_on_noisy_validation_labels():
    ce3 = TaylorPolynomial.cross_entropy(3).vector
    anti = LossSpec.taylor([-v for v in ce3[:6]] + list(ce3[6:]))
    cfg = TrainConfig(
        dataset="digits",
        epochs=3,
        min_accuracy=0.15,
        min_accuracy_epoch=2,
        label_noise={"kind": "symmetric", "rate": 0.6, "seed": 0},
    )
    noisy = train(cfg, anti)
    assert noisy.label_noise["val_realized_rate"] == 0.6
    floor = noisy_accuracy_floor(0.15, 0.6, C)  # 0.1167
    assert noisy.status == "below_threshold" and noisy.epochs == 2.0 and noisy.val_accuracy < floor
    assert f"min_accuracy 0.15 (clean; {floor:.4f} on this noisy validation split)" in noisy.error
    clean = train(cfg.replace(clean_validation=True), anti)
    assert clean.status == "below_threshold" and clean.val_accuracy < 0.15
    assert "min_accuracy 0.15 after epoch 2" in clean.error and "noisy" not in clean.error
    # cross-entropy learns: under a clean floor of 0.3, over its noisy floor of 0.1667, it goes on
    learning = train(cfg.replace(min_accuracy=0.3))
    assert learning.status == "ok" and learning.epochs == 3.0
    assert noisy_accuracy_floor(0.3, 0.6, C) < learning.val_accuracy < 0.3
