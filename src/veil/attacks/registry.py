"""Every attack of the suite, found by its class: a new attack is one module with one :class:`Attack` subclass.

There is no list to keep: :func:`attacks` imports each module of ``veil.attacks`` and collects the
concrete :class:`~veil.attacks.base.Attack` subclasses by their ``name``. ``veil attack list`` prints
them (name, what the adversary holds, what the result reports, the declared parameters).
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


def _subclasses(cls: type[Attack]) -> list[type[Attack]]:
    out: list[type[Attack]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


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
    return dict(sorted(found.items()))


def get(name: str) -> type[Attack]:
    """The attack class registered as ``name``; a ``KeyError`` listing the names otherwise."""
    known = attacks()
    if name not in known:
        raise KeyError(f"no attack named {name!r}; known: {', '.join(known)}")
    return known[name]


def parameters(cls: type[Attack]) -> dict[str, Any]:
    """The declared parameters of an attack's ``__init__`` with their defaults (``inspect.Parameter.empty``
    when required)."""
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


__all__ = ["attacks", "get", "parameters"]
