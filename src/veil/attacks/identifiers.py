"""How a parameter-recovery attack turns its de-obfuscated tokens into identities.

``pooled``: mean of the tokens, centred on the target set, cosine; no training, a floor on what the
tokens reveal. ``recnet``: a RecNet the adversary trains with CosFace on clean ExtNet tokens of its own
auxiliary identities; the stronger identifier, and the same tool the owner relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from veil.attacks.leakage import Embedder, Target, pooled_embedder
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder

IDENTIFIERS = ("pooled", "recnet")


def build_identifier(kind: str, cfg: AttackRecNetConfig, aux_tokens: torch.Tensor | None,
                     aux_labels: torch.Tensor | None,
                     device: torch.device | str = "cpu") -> Callable[[Target], Embedder]:
    """A factory: given the (de-obfuscated) target, the embedding function to score it with."""
    if kind == "recnet":
        if aux_tokens is None or aux_labels is None:
            raise ValueError("identifier 'recnet' needs aux_tokens and aux_labels (clean auxiliary ExtNet tokens)")
        embed = recnet_embedder(fit_recnet(aux_tokens, aux_labels, cfg, None, device))
        return lambda _target: embed

    def pooled(target: Target) -> Embedder:
        return pooled_embedder(target.features.float().mean(dim=(0, 1)))

    return pooled
