"""The built-in presets: they load, build losses with finite values and gradients, and say what they are."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from taylorglo import TaylorLoss
from taylorglo.polynomial import TaylorPolynomial, check_invariant
from taylorglo.presets import Preset, get_preset, list_presets

from .preset_helpers import REPO

from_preset = TaylorLoss.from_preset  # the one builder of a preset's loss

CE_PRESETS = [f"ce-taylor-{k}" for k in range(2, 7)]
RECORDED = {
    "original-mnist": [8.2896, 0.2415, 7.8726, 8.9666, 2.0184, 7.0513, -10.9408, 7.5216],
    "original-older-search": [1.5742, -1.4446, 2.3616, -0.6632, -2.8569, -1.1313, 0.8439, 1.4872],
}
FOUND = [
    "mnist1d-cnn1d-xyt",
    "mnist1d-noisy-symmetric-40",
    "mnist1d-noisy-symmetric-40-clean-validation",
    "mnist1d-noisy-symmetric-60",
    "mnist1d-noisy-symmetric-40-early-stopping",
    "mnist5k-smallcnn",
]  # found by this project's own searches (benchmarks/evidence)
TAYLOR_CE = [f"taylor-ce-{k}" for k in range(2, 7)]  # Taylor cross-entropy, test_taylor_ce_presets.py
BUILTIN = CE_PRESETS + sorted(RECORDED) + FOUND + TAYLOR_CE


def test_the_builtin_presets_are_listed(fresh_registry):
    assert list_presets() == sorted(BUILTIN)
    assert list_presets("ce-taylor-*") == CE_PRESETS
    assert list_presets("original-*") == sorted(RECORDED)
    assert list_presets("taylor-ce-*") == TAYLOR_CE
    assert list_presets("no-such-*") == []


@pytest.mark.parametrize("name", BUILTIN)
def test_each_builtin_builds_a_loss_with_finite_values_and_gradients(fresh_registry, name):
    preset = get_preset(name)
    assert preset.source == f"built-in {name}.json"
    torch.manual_seed(0)
    logits = (3 * torch.randn(32, 10, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, 10, (32,))
    for backend in ("auto", "reference"):
        loss = from_preset(name, backend=backend)(logits, target)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())
        assert grad.abs().sum() > 0
    # The same numbers as TaylorLoss built from the vector itself.
    direct = TaylorLoss(list(preset.params), order=preset.order, variables=preset.variables)
    torch.testing.assert_close(from_preset(name)(logits, target), direct(logits, target), rtol=0, atol=0)


@pytest.mark.parametrize("order", range(2, 7))
def test_ce_presets_are_the_exact_cross_entropy_expansions(fresh_registry, order):
    preset = get_preset(f"ce-taylor-{order}")
    assert preset.polynomial == TaylorPolynomial.cross_entropy(order, (0.5, 0.5))
    assert preset.provenance["kind"] == "analytic"
    assert preset.results is None  # nothing measured, nothing claimed
    assert preset.invariant["gradient"]["passes"] is True


@pytest.mark.parametrize("order", range(2, 7))
def test_ce_presets_follow_cross_entropy_near_the_center(fresh_registry, order):
    # 2-class logits near p = 0.5: the gradient of the expansion must point where cross-entropy's does,
    # and agree in size up to the truncation error, which shrinks with the order (measured: 0.025,
    # 0.027, 0.0028, 0.0027, 0.0006 for orders 2-6; odd orders gain little on 2 classes).
    torch.manual_seed(order)
    logits = (0.2 * torch.randn(256, 2, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, 2, (256,))
    (g_ce,) = torch.autograd.grad(F.cross_entropy(logits, target), logits)
    (g_t,) = torch.autograd.grad(from_preset(f"ce-taylor-{order}")(logits, target), logits)
    cos = F.cosine_similarity(g_ce.flatten(), g_t.flatten(), dim=0)
    assert cos > 0.999
    rel = ((g_t - g_ce).norm() / g_ce.norm()).item()
    assert rel < {2: 0.05, 3: 0.05, 4: 0.006, 5: 0.006, 6: 0.0015}[order]


def test_the_older_search_preset_reproduces_the_worked_example(fresh_registry):
    loss = from_preset("original-older-search", reduction="none")
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=torch.float64)
    values = loss(logits, torch.tensor([0, 2]))
    torch.testing.assert_close(
        values, torch.tensor([15.2385, 15.3507], dtype=torch.float64), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_presets_say_what_is_known_and_what_is_not(fresh_registry, name):
    p = get_preset(name)
    assert list(p.params) == RECORDED[name]
    prov = p.provenance
    assert prov["kind"] == "recorded"
    for unknown in ("model", "training_budget", "search_config", "generations", "evaluations"):
        assert prov[unknown] is None
    assert p.results is None and p.versions is None and p.date is None
    assert prov["unknown"] and any("layout" in u for u in prov["unknown"])
    # Both violate the original invariant at n = 10, and the document records both rules' verdicts.
    assert p.invariant["num_classes"] == 10
    assert p.invariant["original"]["passes"] is check_invariant(p.params, 10, "original") is False
    assert p.invariant["gradient"]["passes"] is check_invariant(p.params, 10, "gradient") is True


def test_builtin_documents_round_trip_and_are_package_data():
    root = resources.files("taylorglo.presets.builtin")
    files = sorted(e.name for e in root.iterdir() if e.name.endswith(".json"))
    assert files == sorted(f"{n}.json" for n in BUILTIN)
    for name in files:
        text = root.joinpath(name).read_text(encoding="utf-8")
        preset = Preset.from_json(text, source=name)
        assert preset.to_json() == text  # the shipped file is exactly what to_json writes
    # pyproject ships every *.json of every package, and builtin/ is a package that find_packages sees.
    if sys.version_info >= (3, 11):
        import tomllib

        cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
        assert "*.json" in cfg["tool"]["setuptools"]["package-data"]["*"]
    from setuptools import find_packages

    assert "taylorglo.presets.builtin" in find_packages(str(REPO), include=["taylorglo*"])
    assert Path(REPO / "taylorglo/presets/builtin/__init__.py").is_file()
    json.loads(root.joinpath("ce-taylor-3.json").read_text())  # plain JSON, no NaN extensions


def test_the_trainer_resolves_preset_specs(fresh_registry):
    from taylorglo.train import build_loss

    loss = build_loss("preset:ce-taylor-3;label_smoothing=0.1", 10)
    assert isinstance(loss, TaylorLoss) and loss.order == 3 and loss.label_smoothing == 0.1
    with pytest.raises(ValueError, match="no-such-preset"):
        build_loss("preset:no-such-preset", 10)


def test_taylorloss_from_preset_builds_the_builtin(fresh_registry):
    loss = TaylorLoss.from_preset("ce-taylor-4", reduction="sum")
    assert type(loss) is TaylorLoss and loss.reduction == "sum" and loss.order == 4
    assert loss.params.tolist() == list(get_preset("ce-taylor-4").params)


@pytest.mark.parametrize(
    ("name", "lr"),
    [
        ("mnist1d-cnn1d-xyt", 0.2),
        ("mnist1d-noisy-symmetric-40", 0.2),
        ("mnist1d-noisy-symmetric-40-clean-validation", 0.2),
        ("mnist1d-noisy-symmetric-60", 0.05),
        ("mnist1d-noisy-symmetric-40-early-stopping", 0.2),
    ],
)
def test_the_mnist1d_presets_carry_their_learning_rate_and_their_win_over_the_tuned_baseline(
    fresh_registry, name, lr
):
    preset = get_preset(name)
    assert preset.variables == ("x", "y", "t") and preset.learning_rate == lr
    assert preset.results["metric"] == "test_accuracy" and preset.results["preset"]["n"] == 20
    assert (
        preset.results["p_value"] < 0.05
        and preset.results["preset"]["mean"] > preset.results["cross_entropy"]["mean"]
    )
    assert any("best tuned baseline" in note for note in preset.notes)
    # the invariant of a loss with t is stated at t = 0, where the search checks it
    assert preset.invariant["gradient"]["passes"] is True


@pytest.mark.parametrize(
    ("name", "setting", "arm", "baseline"),
    [
        ("mnist1d-noisy-symmetric-40", "mnist1d-symmetric-40", "found-xyt", "gce"),
        ("mnist1d-noisy-symmetric-60", "mnist1d-symmetric-60", "found-xyt-ce", "gce"),
        (
            "mnist1d-noisy-symmetric-40-early-stopping",
            "mnist1d-symmetric-40-early-stopping",
            "found-xyt-best-baseline-long",
            "sce",
        ),
        (
            "mnist1d-noisy-symmetric-40-clean-validation",
            "mnist1d-symmetric-40-clean-validation",
            "found-xyt-ce",
            "gce",
        ),
    ],
)
def test_the_noisy_label_presets_are_the_protocols_found_losses_with_their_measured_numbers(
    fresh_registry, name, setting, arm, baseline
):
    """The published loss, learning rate and test numbers are those of the committed results, and
    the loss beats the setting's best tuned baseline on both tests at 0.05 / (searches of the setting)."""
    results = json.loads((REPO / f"benchmarks/evidence/noisy/results/{setting}/results.json").read_text())
    preset = get_preset(name)
    found = results["arms"][arm]
    assert found["spec"]["loss"] == "params:" + ",".join(repr(v) for v in preset.params) + ";variables=x,y,t"
    assert preset.learning_rate == found["spec"]["lr"]
    assert preset.provenance["training_budget"]["label_noise"] == results["label_noise"]
    for key in ("mean", "std", "n"):
        assert preset.results["preset"][key] == found["test"][key]
        assert preset.results["cross_entropy"][key] == results["arms"]["cross-entropy"]["test"][key]
    searches = sum(1 for a in results["arms"] if a.startswith("found-"))
    comparison = results["comparisons"][arm]
    assert results["best_baseline"] == baseline and comparison["mean_a"] > comparison["mean_b"]
    assert max(comparison["p"], comparison["mann_whitney_p"]) < 0.05 / searches
