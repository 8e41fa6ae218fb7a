"""One interface for every feature/instance obfuscation, so every attack runs against every method.

An ``Obfuscation`` maps a batch of tokens (B, N, D) to obfuscated tokens. ``public_info`` is what
may be written into a store manifest: the method's name and its public hyper-parameters, never a
secret parameter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Obfuscation(nn.Module, ABC):
    method: str = "abstract"

    @abstractmethod
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Obfuscate a batch of tokens (B, N, D)."""

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
