"""Presets: named Taylor losses that ship as data, like timm's model registry.

    from taylorglo import TaylorLoss
    from taylorglo.presets import list_presets, get_preset

    list_presets("ce-taylor-*")          # ['ce-taylor-2', ..., 'ce-taylor-6']
    loss = TaylorLoss.from_preset("ce-taylor-3", label_smoothing=0.1)   # the loss of a preset
    get_preset("original-mnist").provenance                  # where it was found, what is unknown

A preset is a validated JSON document (:class:`Preset`, schema in ``taylorglo.presets.preset``):
the polynomial (order, variables, the flat vector in the original TaylorGLO layout) and its
metadata (provenance, measured results, invariant, versions, date). The registry
(``taylorglo.presets.registry``) holds the built-in documents (``builtin/*.json``), those of
installed distributions that declare entry points in the group ``taylorglo.presets`` (found on
first use; ``TAYLORGLO_DISABLE_PLUGINS=1`` turns that off), and runtime ``register_preset`` calls.
``taylorglo.presets.export`` writes a preset as a pip-installable preset package
(``python -m taylorglo.presets export``; a search's found loss: ``python -m taylorglo.search export``).

Presets are data: this package never builds a loss (``TaylorLoss.from_preset`` does, in
``taylorglo.loss``) and never reads an experiment (``taylorglo.search.export`` does). It imports
only ``taylorglo.polynomial``; the import contract in ``pyproject.toml`` checks that.

The trainer and the search take a preset as the loss spec ``preset:NAME``.
"""

from taylorglo.presets.preset import SCHEMA_VERSION, Preset, PresetError, invariant_summary
from taylorglo.presets.registry import (
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    PresetConflictError,
    PresetPluginWarning,
    UnknownPresetError,
    get_preset,
    list_presets,
    register_preset,
    unregister_preset,
)

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "SCHEMA_VERSION",
    "Preset",
    "PresetConflictError",
    "PresetError",
    "PresetPluginWarning",
    "UnknownPresetError",
    "get_preset",
    "invariant_summary",
    "list_presets",
    "register_preset",
    "unregister_preset",
]


def __getattr__(name: str):
    if name == "from_preset":  # removed: it made presets import the loss (a cycle)
        raise AttributeError(
            "taylorglo.presets.from_preset was removed: presets are data and never build a loss; "
            "use taylorglo.TaylorLoss.from_preset(name, **options)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
