"""Collapse is a status: a training that ends at chance level gets ``below_threshold`` whatever its
length, not only from ``min_accuracy_epoch`` on (issue 14: coefficients of 1e6 trained to 8.7%
validation accuracy with status ``ok``)."""

from __future__ import annotations

import pytest

from taylorglo.polynomial import TaylorPolynomial
from taylorglo.train import LossSpec, TrainConfig, train

FAST = TrainConfig(dataset="digits", epochs=2)  # shorter than min_accuracy_epoch (10)
CE3 = TaylorPolynomial.cross_entropy(3).vector
HUGE = LossSpec.taylor([1e6 * v for v in CE3[:6]] + list(CE3[6:]))  # cross-entropy's shape, scaled by 1e6


def test_a_short_training_that_collapses_to_chance_is_below_threshold():
    result = train(FAST, HUGE)
    assert result.val_accuracy <= 1.5 / 10
    assert result.status == "below_threshold"
    assert "chance level" in result.error and "min_accuracy 0.15" in result.error
    assert result.epochs == 2.0  # not stopped early: the rule is applied at the end


def test_a_short_training_that_learns_stays_ok():
    result = train(FAST)
    assert result.status == "ok" and result.error is None and result.val_accuracy > 0.5


@pytest.mark.parametrize(
    "overrides",
    [{"min_accuracy": None}, {"min_accuracy": 0.05}, {"epochs": 0}],
    ids=["floor disabled", "under chance but above a lower floor", "no step: the untrained model"],
)
def test_the_end_of_training_rule_respects_the_floor_and_untrained_runs(overrides):
    result = train(FAST.replace(**overrides), HUGE)
    assert result.status == "ok"
