"""The robust-loss baselines (GCE, SCE, MAE): their formulas, gradients, options and loss specs."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from taylorglo.train import LossSpec, TrainConfig, build_loss, train
from taylorglo.train.robust_losses import (
    GeneralizedCrossEntropy,
    MeanAbsoluteError,
    SymmetricCrossEntropy,
)

# The worked example of REFERENCE.md: logits (2.0, 0.5, -1.0), label 0 -> p = (0.7856, 0.1753, 0.0391).
LOGITS = [2.0, 0.5, -1.0]
_E = [math.exp(z) for z in LOGITS]
P = [e / sum(_E) for e in _E]
PT = P[0]


def _example():
    return torch.tensor([LOGITS], dtype=torch.float64, requires_grad=True), torch.tensor([0])


def _grad(loss_fn):
    logits, target = _example()
    value = loss_fn(logits, target)
    (g,) = torch.autograd.grad(value, logits)
    return value.item(), g[0].tolist()


def _softmax_jacobian_row(scale):
    """scale * dp_t/dz_j = scale * p_t (delta_tj - p_j) for the example."""
    return [scale * PT * ((j == 0) - P[j]) for j in range(3)]


def test_gce_is_one_minus_p_t_to_the_q_over_q_with_its_gradient():
    assert math.isclose(PT, 0.785597, abs_tol=1e-6)
    value, grad = _grad(GeneralizedCrossEntropy(q=0.7))
    assert math.isclose(value, (1 - PT**0.7) / 0.7, rel_tol=1e-12)
    assert math.isclose(value, 0.222031, abs_tol=1e-6)  # by hand: (1 - 0.785597^0.7) / 0.7
    # dL/dz_j = -p_t^(q-1) * dp_t/dz_j
    assert grad == pytest.approx(_softmax_jacobian_row(-(PT ** (0.7 - 1))), rel=1e-12)


def test_sce_is_alpha_ce_plus_beta_times_minus_a_one_minus_p_t_with_its_gradient():
    value, grad = _grad(SymmetricCrossEntropy(alpha=0.1, beta=1.0))
    assert math.isclose(value, 0.1 * -math.log(PT) + 1.0 * 4 * (1 - PT), rel_tol=1e-12)
    assert math.isclose(value, 0.881743, abs_tol=1e-6)  # 0.1 * 0.241322 + 4 * 0.214403
    expected = [0.1 * (P[j] - (j == 0)) + r for j, r in enumerate(_softmax_jacobian_row(-4.0))]
    assert grad == pytest.approx(expected, rel=1e-12)
    value, _ = _grad(SymmetricCrossEntropy(alpha=0.5, beta=2.0, A=-6.0))
    assert math.isclose(value, 0.5 * -math.log(PT) + 2.0 * 6 * (1 - PT), rel_tol=1e-12)


def test_sce_reverse_term_is_the_reverse_cross_entropy_with_log_zero_clamped_to_a():
    torch.manual_seed(0)
    logits, target = torch.randn(64, 7, dtype=torch.float64), torch.randint(0, 7, (64,))
    p = logits.softmax(1)
    log_label = torch.where(F.one_hot(target, 7) > 0, 0.0, -4.0).double()  # log of one-hot, 0 -> A
    rce = -(p * log_label).sum(1)
    loss = SymmetricCrossEntropy(alpha=0.0, beta=1.0, reduction="none")(logits, target)
    torch.testing.assert_close(loss, rce)
    ce_only = SymmetricCrossEntropy(alpha=1.0, beta=0.0)(logits, target)
    torch.testing.assert_close(ce_only, F.cross_entropy(logits, target))


def test_mae_is_the_l1_distance_to_the_one_hot_label_with_its_gradient():
    value, grad = _grad(MeanAbsoluteError())
    assert math.isclose(value, 2 * (1 - PT), rel_tol=1e-12)
    assert math.isclose(value, abs(P[0] - 1) + P[1] + P[2], rel_tol=1e-12)
    assert grad == pytest.approx(_softmax_jacobian_row(-2.0), rel=1e-12)
    torch.manual_seed(1)
    logits, target = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 5, (32,))
    l1 = (logits.softmax(1) - F.one_hot(target, 5)).abs().sum(1)
    torch.testing.assert_close(MeanAbsoluteError(reduction="none")(logits, target), l1)


def test_gce_spans_cross_entropy_and_mae():
    torch.manual_seed(2)
    logits, target = torch.randn(64, 10, dtype=torch.float64), torch.randint(0, 10, (64,))
    torch.testing.assert_close(
        GeneralizedCrossEntropy(q=1.0)(logits, target), MeanAbsoluteError()(logits, target) / 2
    )
    near_ce = GeneralizedCrossEntropy(q=1e-7)(logits, target)
    torch.testing.assert_close(near_ce, F.cross_entropy(logits, target), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "loss_fn",
    [GeneralizedCrossEntropy(q=0.3), SymmetricCrossEntropy(alpha=0.7, beta=0.4, A=-3.0), MeanAbsoluteError()],
    ids=["gce", "sce", "mae"],
)
def test_gradients_pass_gradcheck_and_reductions_and_ignore_index_follow_cross_entropy(loss_fn):
    torch.manual_seed(3)
    logits = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)  # (N, C, d)
    target = torch.randint(0, 4, (6, 3))
    target[0, 1] = target[4, 2] = -100
    assert torch.autograd.gradcheck(lambda z: loss_fn(z, target), (logits,))
    loss_fn.reduction = "none"
    per = loss_fn(logits, target)
    assert per.shape == (6, 3) and per[0, 1] == 0 and per[4, 2] == 0
    # N-d positions are independent rows
    flat = loss_fn(logits.permute(0, 2, 1).reshape(-1, 4), target.reshape(-1))
    torch.testing.assert_close(per.reshape(-1), flat)
    loss_fn.reduction = "sum"
    torch.testing.assert_close(loss_fn(logits, target), per.sum())
    loss_fn.reduction = "mean"
    torch.testing.assert_close(loss_fn(logits, target), per.sum() / 16)  # 18 positions, 2 ignored
    # nothing left: 0 with a zero gradient, as F.cross_entropy's mean would be NaN
    none_kept = loss_fn(logits, torch.full_like(target, -100))
    (g,) = torch.autograd.grad(none_kept, logits)
    assert none_kept.item() == 0.0 and bool((g == 0).all())


def test_16_bit_logits_are_computed_in_float32_and_soft_targets_are_refused():
    logits, target = torch.randn(8, 10).bfloat16(), torch.randint(0, 10, (8,))
    out = GeneralizedCrossEntropy()(logits, target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, GeneralizedCrossEntropy()(logits.float(), target))
    with pytest.raises(ValueError, match="soft"):
        MeanAbsoluteError()(logits.float(), torch.softmax(torch.randn(8, 10), 1))
    with pytest.raises(ValueError, match="do not match"):
        MeanAbsoluteError()(logits.float(), torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        MeanAbsoluteError(reduction="avg")


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical", "cls", "values"),
    [
        ("gce", "gce:q=0.7", GeneralizedCrossEntropy, {"q": 0.7}),
        ("GCE: q = 0.5", "gce:q=0.5", GeneralizedCrossEntropy, {"q": 0.5}),
        (
            "sce",
            "sce:alpha=0.1,beta=1.0,A=-4.0",
            SymmetricCrossEntropy,
            {"alpha": 0.1, "beta": 1.0, "A": -4.0},
        ),
        (
            "sce:beta=0.5,alpha=6,a=-9.21",
            "sce:alpha=6.0,beta=0.5,A=-9.21",
            SymmetricCrossEntropy,
            {"alpha": 6.0, "beta": 0.5, "A": -9.21},
        ),
        ("mae", "mae", MeanAbsoluteError, {}),
    ],
)
def test_robust_specs_parse_with_documented_defaults_round_trip_and_build(text, canonical, cls, values):
    spec = LossSpec.parse(text)
    assert str(spec) == canonical and dict(spec.options) == values
    assert LossSpec.parse(str(spec)) == spec
    assert LossSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert LossSpec.robust(spec.kind, **values) == spec
    loss = build_loss(spec, 10, default_label_smoothing=0.2)  # the config's smoothing is for cross-entropy
    assert type(loss) is cls
    assert {k: getattr(loss, k) for k in values} == values


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("gce:q=2", ["gce:q=2.0 is invalid", "q must be in (0, 1]", "got 2.0"]),
        ("gce:q=0", ["q must be in (0, 1]"]),
        ("gce:p=0.5", ["gce has no option 'p'", "takes q (default 0.7)"]),
        (
            "sce:alpha=0.1,gamma=1",
            ["no option 'gamma'", "alpha (default 0.1), beta (default 1), A (default -4)"],
        ),
        ("sce:alpha=-1", ["alpha must be a finite number >= 0", "-1.0"]),
        ("sce:alpha=0,beta=0", ["not both be 0"]),
        ("sce:A=0.5", ["A (the clamped log 0) must be a finite number < 0", "0.5"]),
        ("mae:q=0.5", ["mae has no option 'q'", "takes no options"]),
        ("gce:q", ["bad option 'q'"]),
        ("gce:q=0.5,q=0.6", ["each key once"]),
        ("gce:q=high", ["'high' is not a number"]),
        ("gce;label_smoothing=0.1", ["gce takes no ;options"]),
        ("huber", ["cannot read loss spec 'huber'", "'gce:q=Q'", "'mae'"]),
    ],
)
def test_bad_robust_specs_raise_errors_naming_the_problem(text, words):
    with pytest.raises(ValueError) as err:
        LossSpec.parse(text)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_robust_spec_fields_that_do_not_apply_are_rejected():
    with pytest.raises(ValueError, match="takes no label_smoothing"):
        LossSpec("gce", label_smoothing=0.1)
    with pytest.raises(ValueError, match="takes no options"):
        LossSpec("cross-entropy", options=(("q", 0.5),))
    with pytest.raises(ValueError, match="takes no params"):
        LossSpec("mae", params=(1.0,))
    with pytest.raises(ValueError, match="q must be in"):
        LossSpec.from_dict({"kind": "gce", "options": {"q": "0.7"}})


def test_each_robust_loss_trains_the_small_cnn_on_digits():
    cfg = TrainConfig(dataset="digits", epochs=4, lr=1.0)
    for spec in ("gce:q=0.7", "sce:alpha=0.1,beta=1.0", "mae"):
        result = train(cfg, spec)
        assert result.status == "ok" and result.loss.startswith(spec.split(":")[0])
        assert result.val_accuracy > 0.5, (spec, result.val_accuracy)  # chance is 0.1
