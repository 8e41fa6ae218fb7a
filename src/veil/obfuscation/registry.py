"""Every obfuscation method under one name: how the owner makes it, how an adversary simulates it.

Why a registry: code that used to branch on a method's name (the owner's pipeline, the Table 2
protections, the expectation attack's simulations, the leakage harness, the CLI) now asks this
module, so a new method is one module (its :class:`~veil.obfuscation.base.Obfuscation` subclass and
one :func:`register` call; the built-ins are registered at the bottom of this file), as timm registers
models by name. Its name is the one name everything uses: its store folder in a run directory, the
harness and ``veil attack --method``, the report and Table 2 (whose label comes from ``label``).

Each :class:`Method` says:

- ``level``: where it acts in the owner's pipeline (``tokens`` after ExtNet, ``image`` before it,
  ``encoder`` instead of it), which is all the generic owner and simulation code needs to know;
- ``options``: its public hyper-parameters with defaults, checked by name (a typo is an error);
- ``from_key(key, geometry, **options)``: the owner's instance, its secrets derived from the owner's
  key (``None`` for methods whose secret is not a key: InstaHide's one-time CSPRNG draws need no key;
  XNN-d's noise is a *trained* encoder, made by ``veil xnnd train``);
- ``random(geometry, generator, randomness, **options)``: the same transform with fresh *public*
  randomness, what an adversary can draw (the expectation attack redraws it per batch).

This module never imports ``veil.keys``: ``from_key`` is typed against
:class:`~veil.obfuscation.base.KeySource`, so attacks may ask the registry for ``random``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from veil.errors import VeilError
from veil.obfuscation.base import LEVELS, KeySource, NoObfuscation, Obfuscation
from veil.obfuscation.instahide import InstaHide
from veil.obfuscation.neuracrypt import NeuraCrypt
from veil.obfuscation.noise import RandomNoise
from veil.obfuscation.randomness import Randomness, SystemRandomness, TorchRandomness
from veil.obfuscation.xnn import MATRIX_KINDS, XNN
from veil.obfuscation.xnn_hardened import XNNHardened


@dataclass(frozen=True)
class Geometry:
    """The shapes a method is made for: ExtNet's token grid and image size, and InstaHide's public pool."""

    tokens: int
    dim: int
    img_size: int
    public: torch.Tensor | None = None

    @classmethod
    def of(cls, ext: Any, public: torch.Tensor | None = None) -> Geometry:
        """From an ExtNet (anything with ``token_shape`` and ``cfg.img_size``)."""
        tokens, dim = ext.token_shape
        return cls(int(tokens), int(dim), int(ext.cfg.img_size), public)

    def public_pool(self) -> torch.Tensor:
        if self.public is None:
            return torch.empty(0, 3, self.img_size, self.img_size, dtype=torch.uint8)
        return self.public


KeyedBuilder = Callable[[KeySource, Geometry, dict[str, Any]], Obfuscation]
RandomBuilder = Callable[[Geometry, torch.Generator | None, Randomness | None, dict[str, Any]], Obfuscation]
OwnerBuilder = Callable[[Geometry, dict[str, Any]], Obfuscation]


@dataclass(frozen=True)
class Method:
    """One registered obfuscation method (see the module docstring for each field's role)."""

    name: str
    level: str
    summary: str
    secret: str
    label: Callable[[dict[str, Any]], str]
    build_random: RandomBuilder
    build_keyed: KeyedBuilder | None = None
    build_keyless: OwnerBuilder | None = None
    options: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    label_pattern: str | None = None
    folder: str = ""  # its name in a run directory (store_<folder>, recnet_<folder>.safetensors); default: name

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if not self.folder:
            object.__setattr__(self, "folder", self.name)

    @property
    def store(self) -> str:
        """The folder of its store in a run directory (``store_xnn``; Vanilla+PE's is ``store_vanilla``)."""
        return f"store_{self.folder}"

    @property
    def recnet(self) -> str:
        """The file of the cloud's RecNet trained on that store, in a run directory."""
        return f"recnet_{self.folder}.safetensors"

    @property
    def owner_side(self) -> bool:
        """Whether :meth:`from_key` can make the owner's instance (XNN-d's noise is trained instead)."""
        return self.build_keyed is not None or self.build_keyless is not None

    @property
    def keyed(self) -> bool:
        """Whether the owner's instance is derived from the owner key."""
        return self.build_keyed is not None

    def resolve(self, **given: Any) -> dict[str, Any]:
        """The full option dict: defaults overridden by ``given``; unknown names and bad choices are errors."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise VeilError(f"method {self.name!r} has no option(s) {', '.join(unknown)} (options: {allowed})")
        out = dict(self.options)
        for name, value in given.items():
            if value is None:
                continue
            default = self.options[name]
            try:
                out[name] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                kind = type(default).__name__
                raise VeilError(f"{self.name} option {name} must be a {kind}, got {value!r}") from None
            if name in self.choices and out[name] not in self.choices[name]:
                raise VeilError(f"{self.name} option {name} must be one of {', '.join(map(str, self.choices[name]))}, "
                                f"got {value!r}")
        return out

    def from_key(self, key: KeySource | None, geometry: Geometry, **options: Any) -> Obfuscation:
        """The owner's instance: secrets from ``key`` (keyed methods) or a CSPRNG (keyless ones)."""
        opts = self.resolve(**options)
        if self.build_keyed is not None:
            if key is None:
                raise VeilError(f"method {self.name!r} needs the owner key")
            return self.build_keyed(key, geometry, opts)
        if self.build_keyless is not None:
            return self.build_keyless(geometry, opts)
        raise VeilError(f"method {self.name!r} is not derived from a key: its secret is {self.secret}")

    def random(self, geometry: Geometry, generator: torch.Generator | None = None,
               randomness: Randomness | None = None, **options: Any) -> Obfuscation:
        """The transform with fresh public randomness: an adversary's simulation, never a secret."""
        return self.build_random(geometry, generator, randomness, self.resolve(**options))

    def display(self, **options: Any) -> str:
        """The method's name in tables (``XNN``, ``IH(k=2)``, ...)."""
        return self.label(self.resolve(**options))

    def parse_label(self, text: str) -> dict[str, Any] | None:
        """The options ``text`` sets if it is this method's table label (``IH(k=3)`` -> ``{"k": 3}``), else None."""
        if self.label_pattern is None:
            return None
        m = re.fullmatch(self.label_pattern, text)
        return self.given(m.groupdict()) if m else None

    def given(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``raw`` options checked and converted, without the defaults of the others."""
        resolved = self.resolve(**raw)
        return {k: resolved[k] for k in raw}


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` under its name (a second method of the same name is a programming error)."""
    if method.name in _METHODS:
        raise ValueError(f"obfuscation method {method.name!r} is already registered")
    if any(method.folder == m.folder for m in _METHODS.values()):
        raise ValueError(f"obfuscation method folder {method.folder!r} is already taken")
    _METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    """The method registered as ``name``."""
    try:
        return _METHODS[name]
    except KeyError:
        raise VeilError(f"unknown obfuscation method {name!r}; choose from {', '.join(_METHODS)}") from None


def names(level: str | None = None) -> tuple[str, ...]:
    """Registered names, optionally only those acting at ``level``."""
    return tuple(n for n, m in _METHODS.items() if level is None or m.level == level)


def methods() -> tuple[Method, ...]:
    return tuple(_METHODS.values())


def unregister(name: str) -> None:
    """Remove a method added at run time (tests add a toy method and take it away again)."""
    _METHODS.pop(name, None)


def lookup(text: str) -> Method:
    """The method ``text`` names: its name, its folder name (``vanilla``) or its table label (``Vanilla+PE``)."""
    for method in _METHODS.values():
        if text == method.folder:
            return method
    return parse(text)[0]


def parse(text: str) -> tuple[Method, dict[str, Any]]:
    """A method and the options ``text`` sets, from a name (``xnn``), ``name:opt=value,...`` or a table label
    (``IH(k=2)``). Options it does not set are left out, so a caller can fill them from elsewhere."""
    name, _, rest = text.partition(":")
    if name in _METHODS:
        raw = dict(item.split("=", 1) for item in rest.split(",") if "=" in item) if rest else {}
        return _METHODS[name], _METHODS[name].given(raw)
    for method in _METHODS.values():
        options = method.parse_label(text)
        if options is not None:
            return method, options
    raise VeilError(f"unknown method {text!r}; choose from {', '.join(_METHODS)} "
                    f"(or a table label: {', '.join(m.display() for m in _METHODS.values())})")


# -- the built-in methods ------------------------------------------------------------------------------

register(Method(
    name="none", level="tokens", summary="no obfuscation: public ExtNet tokens (the Vanilla+PE baseline)",
    secret="nothing", label=lambda _o: "Vanilla+PE", label_pattern=r"Vanilla\+PE|vanilla", folder="vanilla",
    build_random=lambda _g, _gen, _rng, _o: NoObfuscation(),
    build_keyless=lambda _g, _o: NoObfuscation()))

register(Method(
    name="xnn", level="tokens", summary="secret token permutation P and D x D matrix M: O = P X M (XNN paper)",
    secret="owner key", label=lambda _o: "XNN", label_pattern=r"XNN",
    options={"matrix": "orthogonal"}, choices={"matrix": MATRIX_KINDS},
    build_keyed=lambda key, g, o: XNN.from_key(key, g.tokens, g.dim, o["matrix"]),
    build_random=lambda g, gen, _rng, o: XNN.random(g.tokens, g.dim, o["matrix"], gen)))

register(Method(
    name="xnnh", level="tokens",
    summary="XNN-hardened: one-time chaff, keyed orthogonal butterfly over all N*D values, optional keyed curve",
    secret="owner key (maps) + one-time CSPRNG chaff", label=lambda o: _xnnh_label(o),
    label_pattern=r"XNN-H(?:\(chaff=(?P<chaff>\d+)(?:,curve=(?P<curve>[0-9.]+))?\))?",
    options={"chaff": 0, "noise": 1.0, "curve": 0.0, "tokens": 1, "block": 64},
    build_keyed=lambda key, g, o: XNNHardened.from_key(key, g.tokens, g.dim, **o),
    build_random=lambda g, gen, rng, o: XNNHardened.random(g.tokens, g.dim, **o, generator=gen, randomness=rng)))

register(Method(
    name="instahide", level="image",
    summary="pixel mixing with k-1 private/public images and random sign flips (InstaHide baseline)",
    secret="one-time CSPRNG mixes and signs", label=lambda o: f"IH(k={o['k']})", label_pattern=r"IH\(k=(?P<k>\d+)\)",
    options={"k": 2, "cap": 0.65},
    build_keyless=lambda g, o: InstaHide(o["k"], g.public_pool(), o["cap"], SystemRandomness()),
    build_random=lambda g, _gen, rng, o: InstaHide(o["k"], g.public_pool(), o["cap"], rng or TorchRandomness())))

register(Method(
    name="neuracrypt", level="encoder",
    summary="secret random conv encoder + per-sample patch shuffle, instead of ExtNet (NeuraCrypt baseline)",
    secret="owner key (encoder) + one-time CSPRNG shuffles", label=lambda _o: "NC", label_pattern=r"NC",
    options={"patch": 16, "depth": 2},
    build_keyed=lambda key, g, o: NeuraCrypt.from_key(key, g.img_size, o["patch"], g.dim, o["depth"]),
    build_random=lambda g, gen, rng, o: NeuraCrypt.random(g.img_size, o["patch"], g.dim, o["depth"], gen, rng)))

register(Method(
    name="noise", level="tokens",
    summary="XNN-d: LayerNorm(ExtNet tokens) + bounded noise from a trained encoder (veil xnnd train)",
    secret="trained noise encoder (veil xnnd train), not a key", label=lambda o: f"XNN-d(eps={o['eps']:g})",
    label_pattern=r"XNN-d\(eps=(?P<eps>[0-9.]+)\)", options={"eps": 1.0},
    build_random=lambda _g, gen, _rng, o: RandomNoise(o["eps"], gen)))


def _xnnh_label(o: dict[str, Any]) -> str:
    if not o["chaff"] and not o["curve"]:
        return "XNN-H"
    return f"XNN-H(chaff={o['chaff']}" + (f",curve={o['curve']:g})" if o["curve"] else ")")


__all__ = ["Geometry", "Method", "register", "unregister", "get", "lookup", "names", "methods", "parse"]
