"""Extractors by name and by kind, like timm's models: ``veil extractor list`` and every ``--extractor NAME|FILE``.

Each network's own module registers what it offers, as timm registers each model in its file:

- a *kind* (:class:`ExtractorKind`, ``ExtractorConfig.kind``): how a config of that architecture is checked,
  built with fresh weights and loaded from a Veil extractor file (``hybrid`` and ``timm`` in
  :mod:`veil.models.extractor`, ``dlib-resnet`` in :mod:`veil.models.dlib_resnet`);
- *names* (:class:`ExtractorEntry`): a name resolves to a Veil extractor file (safetensors + config
  metadata) in the cache, made on first use. Entries that need the user's data or weights (the hybrid
  trained from scratch, a timm ViT checkpoint) say which command makes their file instead.

This module imports no model code: ``veil.models`` imports the networks' modules, whose registrations run
then (importing this module imports its package first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from veil.errors import VeilError
from veil.paths import cache_dir

if TYPE_CHECKING:  # types only: the extractor module registers here, so it is not imported at run time
    from veil.models.extractor import Extractor, ExtractorConfig

DEFAULT_EXTRACTOR = "dlib-resnet"


@dataclass(frozen=True)
class ExtractorEntry:
    name: str
    summary: str
    materialise: Callable[[Path], Path] | None = None  # cache dir -> extractor file; None: made by a command
    how: str = ""


@dataclass(frozen=True)
class ExtractorKind:
    """One architecture: ``configure`` checks a config of this kind and fills what the kind fixes (image
    size, width); ``fresh`` builds it with untrained weights (Table 2's random extractor); ``load`` builds
    it with the weights of a Veil extractor file whose config it is."""

    name: str
    configure: Callable[[ExtractorConfig], None]
    fresh: Callable[[ExtractorConfig], Extractor]
    load: Callable[[Path, ExtractorConfig], Extractor]


_KINDS: dict[str, ExtractorKind] = {}
_ENTRIES: dict[str, ExtractorEntry] = {}


def register_kind(kind: ExtractorKind) -> ExtractorKind:
    """Add an architecture under its name (``ExtractorConfig.kind``); names are unique."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"extractor kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind added at run time (tests add a toy one and take it away again)."""
    _KINDS.pop(name, None)


def kind(name: str) -> ExtractorKind:
    """The architecture registered as ``name``; a VeilError naming the registered ones otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        raise VeilError(f"extractor kind must be one of {', '.join(map(repr, _KINDS))}, got {name!r}") from None


def kinds() -> tuple[str, ...]:
    return tuple(_KINDS)


def register(entry: ExtractorEntry) -> ExtractorEntry:
    """Add a named extractor (``veil extractor list``, ``--extractor NAME``); names are unique."""
    if entry.name in _ENTRIES and _ENTRIES[entry.name] != entry:
        raise ValueError(f"extractor name {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry
    return entry


def list_extractors() -> list[ExtractorEntry]:
    """Every named extractor, the default first."""
    return sorted(_ENTRIES.values(), key=lambda e: (e.name != DEFAULT_EXTRACTOR, e.name))


def resolve_extractor(spec: str, cache: Path | None = None) -> Path:
    """A registered name -> its extractor file (made on first use); an existing file -> itself."""
    if Path(spec).exists():
        return Path(spec)
    entry = _ENTRIES.get(spec)
    if entry is None:
        prefixed = [e for e in _ENTRIES.values() if e.name.endswith(":NAME") and spec.startswith(e.name[:-4])]
        if not prefixed:
            names = ", ".join(e for e in _ENTRIES if not e.endswith(":NAME"))
            raise VeilError(f"extractor not found: {spec!r} is neither a file nor a registered name ({names})")
        entry = prefixed[0]
    if entry.materialise is None:
        raise VeilError(f"extractor {spec!r} is made from your data or weights: {entry.how}")
    return entry.materialise(cache or cache_dir())


__all__ = ["DEFAULT_EXTRACTOR", "ExtractorEntry", "ExtractorKind", "kind", "kinds", "list_extractors", "register",
           "register_kind", "resolve_extractor", "unregister_kind"]
