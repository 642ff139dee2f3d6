"""The preset registry: built-in documents, third-party entry points, and ``register_preset``.

Loading is lazy: the first call of :func:`list_presets`, :func:`get_preset` or
:func:`register_preset` reads the built-in JSON documents (``taylorglo/presets/builtin/*.json``) and
then every entry point of the group ``taylorglo.presets`` of the installed distributions
(``importlib.metadata``). An entry point is either

* a JSON resource inside a package, ``"my_pkg:preset.json"`` (the value ends in ``.json``; the part
  after the colon is a path relative to the package, read with ``importlib.resources``), or
* an object reference ``"my_pkg.module:presets"`` to a callable returning preset documents (a
  mapping, a :class:`Preset`, JSON text, or a list of them); a mapping or list itself is accepted too.

The preset's name is the document's ``name``; the entry point's own name is only a label. When one
distribution is installed twice on ``sys.path``, the first copy wins (as in ``importlib.metadata``).

A broken entry point (an import error, a callable that raises, invalid JSON, a malformed document)
gives a :class:`PresetPluginWarning` naming the entry point and its distribution, and the other
presets still load: a plugin can never make ``import taylorglo`` or ``get_preset`` of another
preset fail. Two presets of the same name from different sources are an error
(:class:`PresetConflictError`) naming both sources. ``TAYLORGLO_DISABLE_PLUGINS=1`` turns the
entry-point discovery off (the built-ins and ``register_preset`` still work).

The registry holds data only: ``TaylorLoss.from_preset(name, **options)`` (``taylorglo.loss``)
builds the loss of a preset.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from typing import Any, Optional

from taylorglo.presets.preset import Preset, PresetError

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PresetConflictError",
    "PresetPluginWarning",
    "UnknownPresetError",
    "get_preset",
    "list_presets",
    "register_preset",
    "unregister_preset",
]

ENTRY_POINT_GROUP = "taylorglo.presets"
DISABLE_ENV = "TAYLORGLO_DISABLE_PLUGINS"
_BUILTIN_PACKAGE = "taylorglo.presets.builtin"


class PresetPluginWarning(UserWarning):
    """A third-party preset entry point could not be loaded (it is skipped)."""


class PresetConflictError(ValueError):
    """Two sources define a preset of the same name."""


class UnknownPresetError(KeyError):
    """No preset of that name is registered (a KeyError, as for a missing registry key)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


_lock = threading.RLock()
_presets: dict[str, Preset] = {}
_loaded = False
_loading = False


def plugins_disabled() -> bool:
    """Whether ``TAYLORGLO_DISABLE_PLUGINS`` turns entry-point discovery off (1/true/yes/on)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------------------------
def _add(preset: Preset, *, replace: bool = False) -> None:
    old = _presets.get(preset.name)
    if old is not None and not replace:
        if old == preset and old.source == preset.source:
            return  # the same document from the same source again (e.g. one distribution twice on sys.path)
        raise PresetConflictError(
            f"preset {preset.name!r} is defined twice: by {old.source} and by {preset.source}; "
            f"uninstall or rename one of them (or set {DISABLE_ENV}=1 to ignore installed plugins)"
        )
    _presets[preset.name] = preset


def _load_builtins() -> None:
    root = resources.files(_BUILTIN_PACKAGE)
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            source = f"built-in {entry.name}"
            _add(Preset.from_json(entry.read_bytes(), source=source))


def _entry_points() -> list[tuple[Any, Any]]:
    """(distribution, entry point) of the group, the first distribution of a name on sys.path winning.

    Walking the distributions (rather than ``metadata.entry_points()``) gives every entry point its
    distribution on all Python versions, for the messages.
    """
    out = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"] or ""
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key in seen:  # shadowed by an earlier sys.path entry, as importlib.metadata does
                continue
            seen.add(key)
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except Exception as e:  # a broken metadata folder must not break taylorglo
            warnings.warn(
                f"taylorglo: cannot read the entry points of an installed distribution "
                f"({getattr(dist, '_path', '?')}): {type(e).__name__}: {e}",
                PresetPluginWarning,
                5,
            )
            continue
        out += [(dist, ep) for ep in eps]
    return out


def _describe(dist, ep) -> str:
    try:
        owner = f"distribution {dist.metadata['Name']} {dist.version}"
    except Exception:
        owner = "an unreadable distribution"
    return f"entry point {ep.name!r} = {ep.value!r} of {owner}"


def _documents_of(ep) -> list[Any]:
    value = ep.value.strip()
    module, sep, attr = value.partition(":")
    if sep and attr.strip().lower().endswith(".json"):
        resource = resources.files(module.strip())
        for part in attr.strip().split("/"):
            resource = resource.joinpath(part)
        return [resource.read_bytes()]
    obj = ep.load()
    if callable(obj) and not isinstance(obj, (Mapping, Preset)):
        obj = obj()
    if isinstance(obj, (Mapping, Preset, str, bytes)):
        return [obj]
    if isinstance(obj, Iterable):
        return list(obj)
    raise TypeError(f"returned {type(obj).__name__}; expected a preset document, a Preset or a list of them")


def _load_plugins() -> None:
    try:
        eps = _entry_points()
    except Exception as e:  # a broken installed metadata file must not break taylorglo
        warnings.warn(
            f"taylorglo: cannot list preset entry points: {type(e).__name__}: {e}", PresetPluginWarning, 4
        )
        return
    for dist, ep in eps:
        where = _describe(dist, ep)
        try:
            docs = _documents_of(ep)
            found = []
            for i, doc in enumerate(docs):
                src = where if len(docs) == 1 else f"{where} (document {i})"
                if isinstance(doc, (str, bytes)):
                    found.append(Preset.from_json(doc, source=src))
                else:
                    found.append(Preset.from_dict(doc, source=src))
        except PresetError as e:
            warnings.warn(f"taylorglo: skipping preset plugin, {e}", PresetPluginWarning, 4)
            continue
        except (Exception, SystemExit) as e:  # a plugin's import may even call sys.exit
            warnings.warn(
                f"taylorglo: skipping preset plugin {where}: {type(e).__name__}: {e}", PresetPluginWarning, 4
            )
            continue
        for preset in found:
            _add(preset)


def _ensure_loaded() -> None:
    global _loaded, _loading
    if _loaded:
        return
    with _lock:  # re-entrant: a plugin callable may call register_preset during discovery
        if _loaded or _loading:
            return
        _loading = True
        registered = dict(_presets)  # presets registered before discovery ran
        _presets.clear()
        try:
            _load_builtins()
            if not plugins_disabled():
                _load_plugins()
            for preset in registered.values():
                _add(preset)
            _loaded = True
        except BaseException:
            _presets.clear()
            _presets.update(registered)
            raise
        finally:
            _loading = False


def _reset() -> None:
    """Forget everything (discovery runs again on next use). For tests."""
    global _loaded
    with _lock:
        _presets.clear()
        _loaded = False


# ----------------------------------------------------------------------------------------------
def list_presets(pattern: Optional[str] = None) -> list[str]:
    """Names of the available presets, sorted; ``pattern`` filters with shell wildcards (``"ce-*"``)."""
    _ensure_loaded()
    names = sorted(_presets)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`UnknownPresetError` (a KeyError) lists close names."""
    if isinstance(name, Preset):
        return name
    _ensure_loaded()
    try:
        return _presets[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(_presets), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    plugins = f" (preset plugins are disabled by {DISABLE_ENV})" if plugins_disabled() else ""
    raise UnknownPresetError(
        f"no preset named {name!r}.{hint} Known presets: {', '.join(sorted(_presets))}{plugins}"
    )


def register_preset(
    preset: Preset | Mapping[str, Any] | str,
    *,
    source: Optional[str] = None,
    replace: bool = False,
) -> Preset:
    """Add a preset at runtime from a :class:`Preset`, a document mapping or a JSON string.

    A name already taken is a :class:`PresetConflictError` naming both sources, unless
    ``replace=True``. Returns the validated preset.
    """
    if source is None:
        source = "register_preset()"
    if isinstance(preset, Preset):
        if source != "register_preset()" or preset.source == "<unknown>":
            preset = Preset.from_dict(preset.to_dict(), source=source)
    elif isinstance(preset, (str, bytes)):
        preset = Preset.from_json(preset, source=source)
    else:
        preset = Preset.from_dict(preset, source=source)
    _ensure_loaded()
    with _lock:
        _add(preset, replace=replace)
    return preset


def unregister_preset(name: str) -> Preset:
    """Remove a preset from this process's registry (KeyError when absent); returns it."""
    _ensure_loaded()
    with _lock:
        if name not in _presets:
            get_preset(name)  # raises UnknownPresetError with suggestions
        return _presets.pop(name)
