"""Fixtures of the preset tests (helpers live in ``preset_helpers``)."""

from __future__ import annotations

import pytest

from taylorglo.presets import registry


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry with the built-ins only (plugins of the test environment are ignored), reset after."""
    monkeypatch.setenv(registry.DISABLE_ENV, "1")
    registry._reset()
    yield registry
    registry._reset()
