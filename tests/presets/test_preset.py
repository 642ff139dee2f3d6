"""Preset documents: valid ones round-trip exactly, malformed ones fail naming the preset and the field."""

from __future__ import annotations

import json
import math

import pytest

from taylorglo.polynomial import TaylorPolynomial
from taylorglo.presets import Preset, PresetError, invariant_summary

WORKED = [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872]


def full_doc(**changes) -> dict:
    doc = {
        "schema": 1,
        "name": "my-loss",
        "description": "a test loss",
        "order": 3,
        "variables": ["x", "y"],
        "params": list(WORKED),
        "provenance": {
            "kind": "search",
            "dataset": "digits",
            "model": "taylorglo_smallcnn",
            "training_budget": {"epochs": 5},
            "search_config": {"population_size": 8},
            "generations": 4,
            "evaluations": 32,
            "candidate": {"generation": 3, "index": 1},
            "known": ["a fact"],
            "unknown": ["a gap"],
            "free_form_key": "kept",
        },
        "results": {
            "metric": "test_accuracy",
            "protocol": "5 seeds",
            "preset": {"mean": 0.91, "std": 0.01, "n": 5},
            "cross_entropy": {"mean": 0.9, "std": 0.02, "n": 5},
            "p_value": 0.3,
            "test": "welch",
        },
        "invariant": invariant_summary(TaylorPolynomial(WORKED), 10),
        "versions": {"taylorglo": "0.1.0", "torch": None},
        "date": "2026-11-30",
        "tags": ["t"],
        "notes": ["n"],
        "extra": {"anything": [1, 2, {"x": None}]},
    }
    doc.update(changes)
    return doc


def test_a_full_document_round_trips_exactly():
    p = Preset.from_dict(full_doc(), source="test")
    assert p.params == tuple(WORKED) and p.order == 3 and p.variables == ("x", "y")
    again = Preset.from_json(p.to_json(), source="again")
    assert again == p and again.source == "again"
    assert again.provenance["free_form_key"] == "kept"
    assert again.to_dict()["formula"]["text"] == TaylorPolynomial(WORKED).formula("text")
    # Floats survive JSON bit for bit.
    odd = [0.1 + 0.2, 1e-300, -3.0e5, math.pi, 2.0, 1 / 3, 7.0, 0.5]
    assert Preset.from_json(Preset.from_dict({"name": "odd", "params": odd}).to_json()).params == tuple(odd)


def test_a_minimal_document_infers_the_order_and_leaves_the_rest_unknown():
    p = Preset.from_dict({"name": "tiny", "params": [1, 2, 3, 4, 5]})
    assert p.order == 2 and p.variables == ("x", "y")
    assert p.provenance is None and p.results is None and p.versions is None and p.date is None
    t = Preset.from_dict({"name": "with-t", "params": [0.1] * 13, "variables": ["x", "y", "t"]})
    assert t.order == 3 and t.polynomial.has_progress


@pytest.mark.parametrize(
    "changes, field, detail",
    [
        ({"params": None}, "params", "is missing"),
        ({"params": "1,2,3"}, "params", "list of numbers"),
        ({"params": WORKED[:7]}, "params", "has 7 numbers"),
        ({"params": [*WORKED[:7], float("nan")]}, "params", "entry 7 is nan"),
        ({"params": [*WORKED[:7], "1.0"]}, "params", "entry 7"),
        ({"params": [*WORKED[:7], True]}, "params", "entry 7 is True"),
        ({"order": 2}, "params", "has 8 numbers, but an order-2"),
        ({"order": "3"}, "order", "integer"),
        ({"variables": ["x", "z"]}, "variables", "must be one of"),
        ({"variables": "xy"}, "variables", "must be a list"),
        ({"schema": 2}, "schema", "reads schema 1"),
        ({"paramz": [1.0]}, "paramz", "not a preset field"),
        ({"description": 3}, "description", "must be a string"),
        ({"formula": "f"}, "formula", "'text'"),
        ({"provenance": []}, "provenance", "JSON object or null"),
        ({"provenance": {"kind": "guess"}}, "provenance.kind", "'guess'"),
        ({"provenance": {"generations": -1}}, "provenance.generations", "non-negative integer"),
        ({"provenance": {"evaluations": 2.5}}, "provenance.evaluations", "non-negative integer"),
        ({"provenance": {"dataset": 10}}, "provenance.dataset", "string or null"),
        ({"provenance": {"unknown": "all"}}, "provenance.unknown", "list of strings"),
        ({"results": {"preset": {"mean": 0.9, "n": 3}}}, "results.metric", "must name"),
        ({"results": {"metric": "test_accuracy"}}, "results.preset", "is missing"),
        (
            {"results": {"metric": "a", "preset": {"mean": 0.9, "std": 0.1, "n": 0}}},
            "results.preset.n",
            ">= 1",
        ),
        ({"results": {"metric": "a", "preset": {"mean": None, "n": 2}}}, "results.preset.mean", "finite"),
        (
            {"results": {"metric": "a", "preset": {"mean": 0.9, "std": -1, "n": 2}}},
            "results.preset.std",
            ">= 0",
        ),
        (
            {"results": {"metric": "a", "preset": {"mean": 0.9, "n": 2}, "cross_entropy": {"mean": 1}}},
            "results.cross_entropy.n",
            ">= 1",
        ),
        (
            {
                "results": {
                    "metric": "a",
                    "preset": {"mean": 0.9, "n": 2},
                    "cross_entropy": None,
                    "p_value": 0.5,
                }
            },
            "results.p_value",
            "no results.cross_entropy",
        ),
        (
            {
                "results": {
                    "metric": "a",
                    "preset": {"mean": 0.9, "n": 2},
                    "cross_entropy": {"mean": 0.8, "n": 2},
                    "p_value": 1.5,
                }
            },
            "results.p_value",
            "[0, 1]",
        ),
        ({"invariant": {"num_classes": 1}}, "invariant.num_classes", ">= 2"),
        (
            {"invariant": {"num_classes": 10, "original": {"passes": True, "margin": 1.0}}},
            "invariant.original.passes",
            "parameters give False",
        ),
        (
            {"invariant": {"num_classes": 10, "gradient": {"passes": True, "margin": 1.0}}},
            "invariant.gradient.margin",
            "parameters give",
        ),
        ({"invariant": {"num_classes": 10, "rule3": {}}}, "invariant.rule3", "not an invariant rule"),
        ({"versions": {"torch": 2.4}}, "versions", "version strings"),
        ({"date": "30/11/2026"}, "date", "ISO date"),
        ({"tags": "a"}, "tags", "list of strings"),
        ({"notes": [1]}, "notes", "list of strings"),
        ({"extra": [1]}, "extra", "JSON object"),
        ({"extra": {"x": float("inf")}}, "extra", "plain JSON"),
    ],
)
def test_malformed_documents_are_rejected_naming_preset_and_field(changes, field, detail):
    with pytest.raises(PresetError) as err:
        Preset.from_dict(full_doc(**changes), source="somewhere.json")
    msg = str(err.value)
    assert "preset 'my-loss'" in msg
    assert f"field {field!r}" in msg
    assert "somewhere.json" in msg
    assert detail in msg


@pytest.mark.parametrize(
    "name", [None, "", "My-Loss", "has space", "semi;colon", "a:b", "-lead", "x" * 65, 7]
)
def test_bad_names_are_rejected(name):
    with pytest.raises(PresetError, match="field 'name'"):
        Preset.from_dict(full_doc(name=name), source="src")


def test_non_documents_and_bad_json_are_rejected_naming_the_source():
    with pytest.raises(PresetError, match="from plugin-x must be a JSON object, got list"):
        Preset.from_dict([1, 2], source="plugin-x")
    with pytest.raises(PresetError, match="from file.json is not valid JSON"):
        Preset.from_json("{not json", source="file.json")
    with pytest.raises(PresetError, match="unnamed"):
        Preset.from_dict({"params": [1, 2, 3, 4, 5]}, source="s")
    assert issubclass(PresetError, ValueError)


def test_a_preset_is_immutable_and_shares_no_state_with_its_document():
    doc = full_doc()
    p = Preset.from_dict(doc)
    doc["provenance"]["dataset"] = "changed"
    assert p.provenance["dataset"] == "digits"
    with pytest.raises(AttributeError):
        p.name = "other"
    json.dumps(p.to_dict(), allow_nan=False)
