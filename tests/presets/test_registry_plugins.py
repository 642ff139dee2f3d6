"""Entry-point discovery, each case in a fresh interpreter with fake distributions on sys.path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import taylorglo.presets

from .preset_helpers import DISCOVER, make_dist, preset_doc, run_python

pytestmark = pytest.mark.slow  # each test imports taylorglo in a fresh interpreter


def _plugins(root):
    """Two good plugins (a JSON resource, a callable returning two documents) and four broken ones."""
    make_dist(
        root,
        "good-json",
        {"json-loss": "good_json_pkg:preset.json"},
        {"good_json_pkg/__init__.py": "", "good_json_pkg/preset.json": json.dumps(preset_doc("json-loss"))},
    )
    make_dist(
        root,
        "good-callable",
        {"several": "good_callable_mod:presets"},
        {
            "good_callable_mod.py": f"""
            def presets():
                return [{preset_doc("callable-a")!r}, {preset_doc("callable-b", params=[1, 2, 3, 4, 5])!r}]
            """
        },
    )
    make_dist(root, "broken-import", {"bad-import": "module_that_does_not_exist:presets"})
    make_dist(
        root,
        "broken-json",
        {"bad-json": "broken_json_pkg:preset.json"},
        {
            "broken_json_pkg/__init__.py": "",
            "broken_json_pkg/preset.json": '{"name": "bad-json", "params": [1, 2,',
        },
    )
    make_dist(
        root,
        "broken-document",
        {"bad-doc": "broken_doc_mod:presets"},
        {"broken_doc_mod.py": "def presets():\n    return {'name': 'bad-doc', 'params': [1.0, 2.0]}\n"},
    )
    make_dist(
        root,
        "broken-exit",
        {"exits": "broken_exit_mod:presets"},
        {"broken_exit_mod.py": "import sys\nsys.exit(3)\n"},
    )
    make_dist(
        root,
        "broken-raises",
        {"raises": "broken_raises_mod:presets"},
        {"broken_raises_mod.py": "def presets():\n    raise RuntimeError('plugin exploded')\n"},
    )


def test_broken_entry_points_warn_naming_them_and_the_rest_still_loads(tmp_path):
    _plugins(tmp_path)
    out = run_python(
        DISCOVER
        + """
from taylorglo import TaylorLoss
import torch
loss = TaylorLoss.from_preset("json-loss")
out["same"] = bool(torch.equal(loss.params, TaylorLoss([0.5, -1.0, 2.0, 0.5, 0.5]).params))
out["source"] = presets.get_preset("callable-b").source
print(json.dumps(out))
""",
        tmp_path,
    )
    assert out["error"] is None
    names = out["names"]
    for good in ("json-loss", "callable-a", "callable-b", "ce-taylor-3", "original-mnist"):
        assert good in names
    for bad in ("bad-json", "bad-doc"):
        assert bad not in names
    assert out["same"] is True
    assert "entry point 'several'" in out["source"] and "good-callable 1.0" in out["source"]
    warnings = out["warnings"]
    assert len(warnings) == 5, warnings
    assert all(w.startswith("PresetPluginWarning") for w in warnings)
    text = "\n".join(warnings)
    expectations = {
        "broken-import": ["'bad-import'", "ModuleNotFoundError", "module_that_does_not_exist"],
        "broken-json": ["'bad-json'", "not valid JSON"],
        "broken-document": ["'bad-doc'", "field 'params'", "has a wrong length"],
        "broken-raises": ["'raises'", "RuntimeError: plugin exploded"],
        "broken-exit": ["'exits'", "SystemExit: 3"],
    }
    for dist, parts in expectations.items():
        (line,) = [w for w in warnings if f"distribution {dist} 1.0" in w]
        for part in parts:
            assert part in line, (part, line)
    assert "Traceback" not in out["stderr"] and text


def test_a_clash_between_plugins_or_with_a_builtin_is_an_error_naming_both_sources(tmp_path):
    make_dist(
        tmp_path,
        "first-dist",
        {"dup": "first_pkg:preset.json"},
        {"first_pkg/__init__.py": "", "first_pkg/preset.json": json.dumps(preset_doc("dup"))},
    )
    make_dist(
        tmp_path,
        "second-dist",
        {"dup": "second_mod:presets"},
        {"second_mod.py": f"def presets():\n    return {preset_doc('dup', params=[1, 1, 1, 1, 1])!r}\n"},
    )
    out = run_python(DISCOVER + "print(json.dumps(out))", tmp_path)
    assert out["names"] is None
    err = out["error"]
    assert err.startswith("PresetConflictError: preset 'dup' is defined twice")
    assert "first-dist 1.0" in err and "second-dist 1.0" in err

    other = tmp_path / "builtin-clash"
    make_dist(
        other,
        "shadow-dist",
        {"ce": "shadow_mod:presets"},
        {"shadow_mod.py": f"def presets():\n    return [{preset_doc('ce-taylor-2')!r}]\n"},
    )
    out = run_python(DISCOVER + "print(json.dumps(out))", other)
    assert "PresetConflictError" in out["error"]
    assert "built-in ce-taylor-2.json" in out["error"] and "shadow-dist 1.0" in out["error"]


def test_the_environment_variable_turns_discovery_off(tmp_path):
    _plugins(tmp_path)
    code = DISCOVER + "print(json.dumps(out))"
    off = run_python(code, tmp_path, env={"TAYLORGLO_DISABLE_PLUGINS": "1"})
    assert off["error"] is None and off["warnings"] == []
    builtin_dir = Path(taylorglo.presets.__file__).parent / "builtin"
    assert off["names"] == sorted(p.stem for p in builtin_dir.glob("*.json"))
    # and it also silences a clash, which is the documented way out of one
    assert "json-loss" not in off["names"]


def test_a_distribution_found_twice_on_sys_path_is_read_once_first_copy_winning(tmp_path):
    for where, params in (("first", [1, 1, 1, 1, 1]), ("second", [2, 2, 2, 2, 2])):
        make_dist(
            tmp_path / where,
            "twice-installed",
            {"twice": f"twice_mod_{where}:presets"},
            {f"twice_mod_{where}.py": f"def presets():\n    return {preset_doc('twice', params=params)!r}\n"},
        )
    out = run_python(
        DISCOVER + "out['params'] = list(presets.get_preset('twice').params)\nprint(json.dumps(out))",
        tmp_path / "first",
        tmp_path / "second",
    )
    assert out["error"] is None and out["warnings"] == []
    assert out["params"] == [1.0] * 5
