"""How a parameter-recovery attack turns its de-obfuscated tokens into identities.

``pooled``: mean of the tokens, centred on the target set, cosine; no training, a floor on what the
tokens reveal. ``pooled-uncentred``: the same without the centring, which an attacker tries too: on an
embedding space trained for uncentred cosine (dlib's) centring on a few hundred persons costs about a point
(94.48% vs 95.43% on aligned LFW at cut 5, ``bench/results/xnn.md``), elsewhere it can help; the tables run both.
``recnet``: a RecNet the adversary trains with CosFace on clean ExtNet tokens of its own
auxiliary identities; the stronger identifier, and the same tool the owner relies on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from veil.attacks.leakage import Embedder, Target, pooled_embedder
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder

IDENTIFIERS = ("pooled", "pooled-uncentred", "recnet")


def build_identifier(kind: str, cfg: AttackRecNetConfig, aux_tokens: torch.Tensor | None,
                     aux_labels: torch.Tensor | None,
                     device: torch.device | str = "cpu") -> Callable[[Target], Embedder]:
    """A factory: given the (de-obfuscated) target, the embedding function to score it with."""
    if kind == "recnet":
        if aux_tokens is None or aux_labels is None:
            raise ValueError("identifier 'recnet' needs aux_tokens and aux_labels (clean auxiliary ExtNet tokens)")
        embed = recnet_embedder(fit_recnet(aux_tokens, aux_labels, cfg, None, device))
        return lambda _target: embed

    if kind == "pooled-uncentred":
        uncentred = pooled_embedder(None)
        return lambda _target: uncentred

    def pooled(target: Target) -> Embedder:
        return pooled_embedder(target.features.float().mean(dim=(0, 1)))

    return pooled
