"""One interface for every feature/instance obfuscation, so every attack runs against every method.

An ``Obfuscation`` is a module whose ``level`` says where it sits in the owner's pipeline:

- ``"tokens"``: after the public ExtNet, tokens (B, N, D) -> tokens (XNN, none);
- ``"image"``: before ExtNet, images -> images in [0, 1] (InstaHide);
- ``"encoder"``: instead of ExtNet, images -> tokens (NeuraCrypt).

``public_info`` is what may be written into a store manifest: the method's name and its public
hyper-parameters, never a secret parameter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch
from torch import nn

LEVELS = ("tokens", "image", "encoder")


class KeySource(Protocol):
    """What a method needs of the owner's key: labelled deterministic draws and a fingerprint.

    Why a protocol and not ``veil.keys.OwnerKey``: the derivations (which HKDF label feeds which
    parameter) are public, only the key is secret. Typing against this protocol lets each method's
    module hold its own ``from_key`` without importing the key module, so the modules an attacker or
    the cloud runs stay free of it (``tests/test_trust_boundaries.py``).
    """

    @property
    def fingerprint(self) -> str:
        """A short public digest of the key (``OwnerKey.fingerprint`` is a read-only property)."""

    def rng(self, label: str) -> Any:
        """A deterministic generator (``permutation(n)``, ``normal(shape)``) for ``label``."""


class Obfuscation(nn.Module, ABC):
    method: str = "abstract"
    level: str = "tokens"
    mixes_labels: bool = False  # True when training rows carry mixed soft labels (``mix(images, targets, ...)``)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Obfuscate a batch: tokens (B, N, D), or images (B, 3, H, W) for image/encoder levels."""

    def mix(self, images: torch.Tensor, targets: torch.Tensor | None = None, private: torch.Tensor | None = None,
            private_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mixed images and soft targets: only methods with ``mixes_labels`` (InstaHide) have it."""
        raise NotImplementedError(f"{self.method} does not mix labels")

    def public_info(self) -> dict:
        """Method name and public hyper-parameters (safe to send to the cloud)."""
        return {"method": self.method}

    @property
    def key_fingerprint(self) -> str | None:
        """Fingerprint of the owner key the parameters were derived from (None if keyless)."""
        return getattr(self, "_fingerprint", None)


class NoObfuscation(Obfuscation):
    """Vanilla: tokens go to the cloud as they are (the paper's Vanilla+PE baseline)."""

    method = "none"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens
