"""SYNTHETIC token sets for the attack tests: no images, no ExtNet, milliseconds to make.

Each token is a per-position signature (what a position embedding leaves behind), plus the
person's identity vector, plus skewed per-position noise. Separate seeds give disjoint identities,
the way the adversary's auxiliary set and the owner's data are disjoint.
"""

from __future__ import annotations

import torch

from veil.attacks.leakage import Target

TOKENS, DIM = 6, 12


def structure(seed: int = 0, tokens: int = TOKENS, dim: int = DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """The public part every sample shares: per-position means and per-position noise scales."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, dim, generator=g) * 3, torch.rand(tokens, dim, generator=g) * 1.5 + 0.2


def tokens_of(identities: int, per_identity: int, seed: int, noise: float = 0.3,
              shared: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (n, N, D), labels (n,)) of fresh synthetic identities; ``shared`` seeds the public structure."""
    pos, scale = structure(shared)
    g = torch.Generator().manual_seed(1000 + seed)
    ids = torch.randn(identities, pos.shape[1], generator=g) * 2
    labels = torch.arange(identities).repeat_interleave(per_identity)
    skewed = torch.empty(len(labels), *pos.shape).exponential_(generator=g) - 1
    return pos + ids[labels].unsqueeze(1) + noise * scale * skewed, labels


def target_of(tokens: torch.Tensor, labels: torch.Tensor) -> Target:
    return Target.from_features(tokens, labels, seed=0)
