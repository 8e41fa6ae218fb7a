"""Every attack of the suite, found by its class: a new attack is one module with one :class:`Attack` subclass.

There is no list to keep: :func:`attacks` imports each module of ``veil.attacks`` and collects the
concrete :class:`~veil.attacks.base.Attack` subclasses by their ``name``. ``veil attack list`` prints
them (name, what the adversary holds, what the result reports, the declared parameters), and ``veil
report`` titles their results with the class's ``title``. An attack defined elsewhere (a plugin, a
test) joins with :func:`register`.
Importing every module costs a few seconds (torchmetrics, the obfuscation registry), so nothing here
runs at import time.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import veil.attacks as package
from veil.attacks.base import Attack

_EXTERNAL: dict[str, type[Attack]] = {}


def _subclasses(cls: Any) -> list[type[Attack]]:
    out: list[type[Attack]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def register(cls: type[Attack]) -> type[Attack]:
    """Add an attack defined outside ``veil.attacks`` (usable as a class decorator); names stay unique."""
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__qualname__} is abstract: only a concrete attack can be registered")
    if cls.name in attacks() and attacks()[cls.name] is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered")
    _EXTERNAL[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an attack added with :func:`register` (tests add toy attacks and take them away again)."""
    _EXTERNAL.pop(name, None)


def attacks() -> dict[str, type[Attack]]:
    """Name -> class of every concrete attack in ``veil.attacks``, sorted by name."""
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{mod.name}")
    found: dict[str, type[Attack]] = {}
    for cls in _subclasses(Attack):
        if inspect.isabstract(cls) or not cls.__module__.startswith(package.__name__ + "."):
            continue
        if cls.name in found and found[cls.name] is not cls:
            raise RuntimeError(f"two attacks are named {cls.name!r}: {found[cls.name].__qualname__} and "
                               f"{cls.__qualname__}")
        found[cls.name] = cls
    found.update({n: c for n, c in _EXTERNAL.items() if n not in found})
    return dict(sorted(found.items()))


def get(name: str) -> type[Attack]:
    """The attack class registered as ``name``; a ``KeyError`` listing the names otherwise."""
    known = attacks()
    if name not in known:
        raise KeyError(f"no attack named {name!r}; known: {', '.join(known)}")
    return known[name]


def title(name: str) -> str:
    """The report's name for attack ``name`` (a result of an attack no longer registered: its name in words)."""
    cls = attacks().get(name)
    return cls.title if cls is not None else name.replace("_", " ")


def label(name: str) -> str:
    """The attack's row label in tables (``cloud's own RecNet``)."""
    cls = attacks().get(name)
    return cls.label if cls is not None else name.replace("_", " ")


def parameters(cls: type[Attack]) -> dict[str, Any]:
    """The declared parameters of an attack's ``__init__`` with their defaults (``inspect.Parameter.empty``
    when required)."""
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


__all__ = ["attacks", "get", "label", "parameters", "register", "title", "unregister"]
