"""The key-free identifiers on SYNTHETIC tokens: ``pooled`` centres on the target set, ``pooled-uncentred`` does
not (on aligned LFW the uncentred one leaks a point more: ``bench/results/attacks.md``)."""

from __future__ import annotations

import torch

from veil.attacks.identifiers import IDENTIFIERS, build_identifier
from veil.attacks.leakage import Target
from veil.attacks.recnet_fit import AttackRecNetConfig


def target(tokens: torch.Tensor, labels: torch.Tensor) -> Target:
    n = len(labels)
    gallery = torch.arange(0, n, 2)
    return Target(features=tokens, labels=labels, gallery=gallery, probe=torch.arange(1, n, 2))


def embed(kind: str, t: Target) -> torch.Tensor:
    return build_identifier(kind, AttackRecNetConfig(), None, None)(t)(t.features)


def test_uncentred_is_the_plain_mean_and_centred_subtracts_the_target_mean() -> None:
    g = torch.Generator().manual_seed(0)
    tokens, labels = torch.randn(8, 5, 3, generator=g), torch.arange(4).repeat_interleave(2)
    t = target(tokens, labels)
    assert "pooled-uncentred" in IDENTIFIERS
    assert torch.allclose(embed("pooled-uncentred", t), tokens.mean(dim=1))
    assert torch.allclose(embed("pooled", t), tokens.mean(dim=1) - tokens.mean(dim=(0, 1)))
