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

import torch
from torch import nn


class Obfuscation(nn.Module, ABC):
    method: str = "abstract"
    level: str = "tokens"

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Obfuscate a batch: tokens (B, N, D), or images (B, 3, H, W) for image/encoder levels."""

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
