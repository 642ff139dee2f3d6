import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taylorglo.polynomial import TaylorPolynomial, parameter_count
from taylorglo.train import LossSpec, build_loss

WORKED = [
    1.5742,
    -1.4446,
    2.3616,
    -0.6632,
    -2.8569,
    -1.1313,
    0.8439,
    1.4872,
]  # the worked example: losses 15.2385 and 15.3507


@pytest.mark.parametrize("text", ["cross-entropy", "CE", "cross_entropy", " crossentropy "])
def test_cross_entropy_aliases_parse_to_the_canonical_spec(text):
    spec = LossSpec.parse(text)
    assert spec == LossSpec.cross_entropy()
    assert str(spec) == "cross-entropy"


@pytest.mark.parametrize(
    "spec",
    [
        LossSpec.cross_entropy(),
        LossSpec.cross_entropy(label_smoothing=0.1),
        LossSpec.preset("baikal"),
        LossSpec.taylor(WORKED),
        LossSpec.taylor([0.1, 1e-20, -3.0e5], label_smoothing=0.05),
        LossSpec.taylor([float(i) / 7 for i in range(13)], variables=("x", "y", "t")),
        LossSpec.taylor(
            [0.5] * 23, variables=("x", "y", "t")
        ),  # 23 numbers: order 6 in (x,y) or 4 in (x,y,t)
    ],
)
def test_str_round_trips_through_parse_and_dict(spec):
    assert LossSpec.parse(str(spec)) == spec
    assert LossSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert LossSpec.coerce(spec.to_dict()) == spec


@settings(max_examples=60, deadline=None)
@given(
    order=st.integers(1, 5),
    variables=st.sampled_from([("x", "y"), ("x", "y", "t")]),
    data=st.data(),
)
def test_any_finite_vector_round_trips_exactly(order, variables, data):
    n = parameter_count(order, variables)
    values = data.draw(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64),
            min_size=n,
            max_size=n,
        )
    )
    spec = LossSpec.taylor(values, variables=variables)
    again = LossSpec.parse(str(spec))
    assert again == spec
    assert again.params == tuple(values)  # bit-exact, no rounding
    assert again.order == order


def test_parse_reads_options_and_whitespace():
    spec = LossSpec.parse(" params: 1, 2 ,3 ; label_smoothing = 0.1 ")
    assert spec.params == (1.0, 2.0, 3.0) and spec.order == 1 and spec.label_smoothing == 0.1
    assert LossSpec.parse("params:" + ",".join(["0"] * 13) + ";variables=x,y,t;order=3").order == 3
    assert LossSpec.parse("preset:my-loss").name == "my-loss"


@pytest.mark.parametrize(
    "text, match",
    [
        ("mse", "cannot read loss spec 'mse'"),
        ("params:", "no numbers"),
        ("params:1,2", "cannot have 2 numbers"),
        ("params:1,2,x", "'x' is not a number"),
        ("params:1,nan,3", "finite"),
        ("params:1,1e999,3", "finite"),
        ("params:1,2,3;order=2", "has 5 parameters, got 3"),
        ("params:1,2,3;variables=x,z", "variables"),
        ("params:1,2,3;colour=red", "bad option"),
        ("params:1,2,3;order=1;order=1", "bad option"),
        ("cross-entropy;order=3", "takes no order"),
        ("preset:", "needs a name"),
        ("cross-entropy;label_smoothing=1.5", "label_smoothing"),
    ],
)
def test_bad_specs_raise_clear_errors(text, match):
    with pytest.raises(ValueError, match=match):
        LossSpec.parse(text)


def test_fields_that_do_not_apply_are_rejected():
    with pytest.raises(ValueError, match="takes no params"):
        LossSpec("cross-entropy", params=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="only a preset"):
        LossSpec("taylor", params=(1.0, 2.0, 3.0), name="x")
    with pytest.raises(ValueError, match="kind"):
        LossSpec("mse")
    with pytest.raises(ValueError, match="unknown LossSpec key"):
        LossSpec.from_dict({"kind": "cross-entropy", "weight": 1})


def test_taylor_accepts_a_tensor():
    spec = LossSpec.taylor(torch.tensor(WORKED, dtype=torch.float64))
    assert spec.params == tuple(WORKED) and spec.order == 3 and spec.variables == ("x", "y")


def test_build_cross_entropy_uses_spec_then_default_smoothing():
    assert build_loss("cross-entropy", 10).label_smoothing == 0.0
    assert build_loss("cross-entropy", 10, default_label_smoothing=0.2).label_smoothing == 0.2
    assert (
        build_loss("cross-entropy;label_smoothing=0.1", 10, default_label_smoothing=0.2).label_smoothing
        == 0.1
    )


def test_build_taylor_matches_the_worked_example():
    loss = build_loss(LossSpec.taylor(WORKED), 3)
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    value = loss(logits, torch.tensor([0, 2]))
    assert math.isclose(value.item(), 15.2946, abs_tol=2e-3)
    assert not loss.has_progress


def test_build_cross_entropy_taylor_expansion_tracks_cross_entropy_gradients():
    # the order-3 expansion of x log y around y=0.5 is close to cross-entropy near p=0.5
    loss = build_loss(LossSpec.taylor(TaylorPolynomial.cross_entropy(3).vector), 2)
    logits = torch.zeros(4, 2, requires_grad=True)
    loss(logits, torch.tensor([0, 1, 0, 1])).backward()
    reference = torch.zeros(4, 2, requires_grad=True)
    torch.nn.functional.cross_entropy(reference, torch.tensor([0, 1, 0, 1])).backward()
    assert torch.allclose(logits.grad, reference.grad, atol=1e-5)


def test_time_varying_spec_builds_a_loss_with_progress():
    spec = LossSpec.taylor([0.0] * 13, variables=("x", "y", "t"))
    assert spec.has_progress
    loss = build_loss(spec, 10)
    assert loss.has_progress
    loss.set_progress(0.5)


def test_unknown_preset_is_a_value_error():
    with pytest.raises(ValueError, match="definitely-not-a-preset"):
        build_loss("preset:definitely-not-a-preset", 10)
    with pytest.raises(ValueError, match="Did you mean 'ce-taylor-3'"):  # the registry's suggestion
        build_loss("preset:ce-taylr-3", 10)


@pytest.mark.parametrize("name", ["ce-taylor-3", "mnist1d-cnn1d-xyt"])
def test_preset_spec_builds_the_presets_polynomial_with_taylorloss_from_preset(name):
    from taylorglo.loss import TaylorLoss
    from taylorglo.presets import get_preset

    preset = get_preset(name)
    loss = build_loss(LossSpec.preset(name, label_smoothing=0.1), 10)
    assert type(loss) is TaylorLoss and loss.label_smoothing == 0.1
    assert tuple(loss.params.tolist()) == preset.params and loss.order == preset.order
    assert loss.has_progress == ("t" in preset.variables)
