"""The registry in this process: register, clash, unknown names; ``TaylorLoss.from_preset``, the one
builder of a preset's loss, with its options."""

from __future__ import annotations

import pytest
import torch

from taylorglo import TaylorLoss
from taylorglo.presets import (
    Preset,
    PresetConflictError,
    UnknownPresetError,
    get_preset,
    list_presets,
    register_preset,
    unregister_preset,
)

from .preset_helpers import preset_doc


def test_register_preset_adds_a_preset_that_builds_the_same_loss(fresh_registry):
    p = register_preset(preset_doc("my-loss"), source="my notebook")
    assert p.source == "my notebook"
    assert "my-loss" in list_presets() and get_preset("my-loss") is p
    logits = torch.randn(8, 5, dtype=torch.float64)
    target = torch.randint(0, 5, (8,))
    expected = TaylorLoss([0.5, -1.0, 2.0, 0.5, 0.5])(logits, target)
    assert torch.equal(TaylorLoss.from_preset("my-loss")(logits, target), expected)
    assert torch.equal(TaylorLoss.from_preset(p)(logits, target), expected)  # a Preset object works too
    assert unregister_preset("my-loss") is p
    assert "my-loss" not in list_presets()


def test_register_accepts_json_text_and_presets(fresh_registry):
    register_preset('{"name": "from-json", "params": [1, 2, 3, 4, 5]}')
    register_preset(Preset.from_dict(preset_doc("from-object")), source="object")
    assert get_preset("from-json").order == 2
    assert get_preset("from-object").source == "object"


def test_a_clash_names_both_sources(fresh_registry):
    with pytest.raises(PresetConflictError) as err:
        register_preset(preset_doc("ce-taylor-3"), source="my plugin")
    msg = str(err.value)
    assert "'ce-taylor-3'" in msg and "built-in ce-taylor-3.json" in msg and "my plugin" in msg
    register_preset(preset_doc("twice"), source="a")
    with pytest.raises(PresetConflictError, match="by a and by b"):
        register_preset(preset_doc("twice", params=[1, 1, 1, 1, 1]), source="b")
    # The same document from the same source again is not a clash (re-running a notebook cell).
    register_preset(preset_doc("twice"), source="a")
    # replace=True is the explicit way to override.
    register_preset(preset_doc("ce-taylor-3", params=[1, 1, 1, 1, 1]), source="mine", replace=True)
    assert get_preset("ce-taylor-3").source == "mine"


def test_unknown_names_are_key_errors_with_suggestions(fresh_registry):
    with pytest.raises(UnknownPresetError) as err:
        get_preset("ce-taylr-3")
    assert isinstance(err.value, KeyError)
    msg = str(err.value)
    assert msg.startswith("no preset named 'ce-taylr-3'.") and "Did you mean 'ce-taylor-3'" in msg
    assert "Known presets: ce-taylor-2" in msg
    with pytest.raises(KeyError):
        unregister_preset("never-registered")


def test_from_preset_passes_loss_options_and_refuses_to_change_the_polynomial(fresh_registry):
    loss = TaylorLoss.from_preset(
        "ce-taylor-3", reduction="none", ignore_index=3, label_smoothing=0.1, backend="reference"
    )
    assert (loss.reduction, loss.ignore_index, loss.label_smoothing, loss.backend) == (
        "none",
        3,
        0.1,
        "reference",
    )
    preset = get_preset("ce-taylor-3")
    assert loss.params.tolist() == list(preset.params) and loss.order == preset.order
    with pytest.raises(TypeError, match="the preset fixes params"):
        TaylorLoss.from_preset("ce-taylor-3", params=[1.0] * 8)
    with pytest.raises(TypeError, match="unexpected option.*reductio"):
        TaylorLoss.from_preset("ce-taylor-3", reductio="sum")
    with pytest.raises(UnknownPresetError, match="Did you mean 'ce-taylor-3'"):
        TaylorLoss.from_preset("ce-taylr-3")
    assert TaylorLoss.from_preset(get_preset("ce-taylor-2")).order == 2  # a Preset object works too


def test_from_preset_of_a_subclass_builds_the_subclass(fresh_registry):
    # The real classmethod of taylorglo.loss (no copy of it here): cls is the subclass.
    class Sub(TaylorLoss):
        pass

    loss = TaylorLoss.from_preset("ce-taylor-3", reduction="sum")
    assert type(loss) is TaylorLoss and loss.reduction == "sum"
    sub = Sub.from_preset("ce-taylor-3")
    assert type(sub) is Sub and torch.equal(sub.params, loss.params)


def test_presets_no_longer_build_losses_and_say_where_the_builder_is():
    import taylorglo.presets as presets

    with pytest.raises(AttributeError, match=r"TaylorLoss\.from_preset"):
        presets.from_preset  # noqa: B018
    assert not hasattr(Preset, "loss")
