"""Bad inputs to the loss get one clear line naming the value and what would be right (issue 15).

(Out-of-range class indices are refused inside the ops: test_ops.py.)
"""

from __future__ import annotations

import re

import pytest
import torch

from taylorglo import TaylorLoss, TaylorPolynomial, taylor_loss

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize(
    "logits, target",
    [
        (torch.randn(4, 0), torch.zeros(4, dtype=torch.long)),
        (torch.randn(4, 0), torch.zeros(4, 0)),  # soft targets
        (torch.randn(2, 0, 3), torch.zeros(2, 3, dtype=torch.long)),
    ],
    ids=["hard", "soft", "spatial"],
)
def test_logits_with_zero_classes_are_refused_with_the_shape(logits, target, label_smoothing, backend):
    loss = TaylorLoss(WORKED, label_smoothing=label_smoothing, backend=backend)
    shape = re.escape(str(tuple(logits.shape)))
    with pytest.raises(ValueError, match=rf"logits of shape {shape} have 0 classes \(dim 1\)"):
        loss(logits, target)


def test_an_empty_batch_is_still_fine_with_classes():
    out = TaylorLoss(WORKED, label_smoothing=0.1)(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda text: TaylorLoss(text),
        lambda text: taylor_loss(torch.randn(2, 3), torch.tensor([0, 1]), text),
    ],
    ids=["TaylorLoss", "taylor_loss"],
)
def test_params_given_as_a_string_are_refused_with_the_way_to_split_it(make):
    with pytest.raises(TypeError, match=r"params must be numbers .* got the string '1,2,3'; split it first"):
        make("1,2,3")


def test_a_preset_name_given_as_params_points_to_from_preset():
    with pytest.raises(TypeError, match=r"TaylorLoss\.from_preset\(name\)"):
        TaylorLoss("ce-taylor-3")


def test_taylor_polynomial_refuses_a_string_of_numbers():
    with pytest.raises(TypeError, match="params must be a sequence of numbers, got the string '1,2,3'"):
        TaylorPolynomial("1,2,3")


def test_wrong_vector_length_states_expected_lengths():
    with pytest.raises(ValueError, match=r"valid lengths are 3 \(order 1\), 5 \(order 2\), 8 \(order 3\)"):
        TaylorLoss([0.0] * 7)
    with pytest.raises(ValueError, match="takes 8 parameters, got 5"):
        TaylorLoss([0.0] * 5, order=3)


@pytest.mark.parametrize(
    "logits, target, match",
    [
        (torch.randn(4, 3), torch.tensor([0, 1, 2]), "class-index target must have shape"),
        (torch.randn(4, 3), torch.rand(4, 2), "soft .* must have the logits' shape"),
        (torch.randint(0, 3, (4, 3)), torch.tensor([0, 1, 2, 0]), "floating-point"),
        (torch.randn(4, 3), torch.tensor([True, False, True, True]), "class indices"),
    ],
)
def test_bad_shapes_and_dtypes_raise_clear_errors(logits, target, match):
    with pytest.raises((ValueError, TypeError), match=match):
        taylor_loss(logits, target, WORKED)


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="reduction"):
        TaylorLoss(WORKED, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        TaylorLoss(WORKED, label_smoothing=1.5)
    with pytest.raises(ValueError, match="finite"):
        TaylorLoss([float("nan")] + WORKED[1:])
    with pytest.raises(ValueError, match="progress"):
        taylor_loss(torch.randn(2, 3), torch.tensor([0, 1]), [0.0] * 13, variables=("x", "y", "t"))


def test_params_on_wrong_device_or_shape_raise():
    with pytest.raises(ValueError, match="1-d"):
        taylor_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.zeros(2, 4))
