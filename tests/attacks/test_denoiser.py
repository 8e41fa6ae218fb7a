"""The XNN-d de-noiser as an attack (SYNTHETIC tokens): fitted on leaked pairs, scored like every attack."""

from __future__ import annotations

import torch

from tests.attacks.synth import target_of, tokens_of
from veil.attacks import registry
from veil.attacks.base import AttackResult, View
from veil.attacks.denoiser import DenoiserAttack


class Pooled(torch.nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.mean(dim=1)


def _noise(tokens: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    a = torch.linalg.qr(torch.randn(tokens.shape[-1], tokens.shape[-1], generator=g))[0]
    return tokens @ a + 0.5  # an invertible affine "noise": a de-noiser undoes it exactly


def test_denoiser_undoes_an_affine_noise_and_reports_like_any_attack() -> None:
    clean, _ = tokens_of(10, 2, seed=1)
    test, labels = tokens_of(8, 3, seed=2)
    view = View(pairs=(clean, _noise(clean)), target=target_of(_noise(test), labels), recnet=Pooled())
    result = DenoiserAttack().on(view, command="pytest (SYNTHETIC)")
    reference = DenoiserAttack().on(View(pairs=(clean, clean), target=target_of(test, labels), recnet=Pooled()))
    assert result.details["determined"] and result.rate.hits == reference.rate.hits
    assert AttackResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    assert registry.get("denoiser") is DenoiserAttack


def test_too_few_pairs_is_not_determined() -> None:
    clean, _ = tokens_of(3, 1, seed=1)
    test, labels = tokens_of(4, 2, seed=2)
    result = DenoiserAttack().on(View(pairs=(clean, clean), target=target_of(test, labels), recnet=Pooled()))
    assert result.leakage is None and not result.details["determined"] and "too few" in result.details["note"]
    assert result.to_dict()["determined"] is False and "rate" not in result.to_dict()
