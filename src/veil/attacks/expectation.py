"""Expectation attack (XNN paper, section 5.2).

The adversary holds the public ExtNet and an auxiliary face set of *other* identities. It trains an
"Expectation-RecNet" on the auxiliary tokens obfuscated with fresh random XNN parameters every batch,
so the network must learn to recognise faces whatever the permutation and matrix are; it then embeds
the owner's obfuscated test features and matches probes against the gallery.

Against a store with no obfuscation (Vanilla+PE) the same attack with ``obfuscation='none'`` is plain
transfer: a RecNet trained on the auxiliary identities, applied to the owner's clean tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder
from veil.metrics import Rate
from veil.obfuscation import registry
from veil.obfuscation.xnn import MATRIX_KINDS

OBFUSCATIONS = registry.names("tokens")  # every method the adversary can redraw on ExtNet tokens


@dataclass
class ExpectationResult:
    """Leakage of the owner's test persons under the expectation attack."""

    rate: Rate
    chance: float
    leakage: LeakageResult
    obfuscation: str
    matrix: str
    aux_rows: int
    aux_identities: int
    seconds: float
    config: dict = field(default_factory=dict)


class ExpectationAttack(Attack):
    """Train on randomly obfuscated auxiliary tokens, then identify the owner's obfuscated test persons.

    ``obfuscation`` and ``matrix`` are what the store's public manifest says the owner used; the
    parameters themselves are redrawn from a public ``torch.Generator`` every batch.
    """

    name = "expectation"
    title = "expectation (paper 5.2)"
    holdings = ("public ExtNet", "labelled auxiliary images of other persons (aux_tokens, aux_labels)",
                "the store's public manifest (method, matrix)", "the owner's obfuscated test features (target)")

    def __init__(self, obfuscation: str = "xnn", matrix: str = "orthogonal",
                 recnet: AttackRecNetConfig | None = None, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.obfuscation = params.choice("obfuscation", obfuscation, OBFUSCATIONS)
        self.matrix = params.choice("matrix", matrix, MATRIX_KINDS)
        self.recnet_cfg = params.recnet_config(recnet, AttackRecNetConfig())
        self.seed = params.non_negative_int("seed", seed)
        self.device = torch.device(device)

    def _output_shape(self, aux_tokens: torch.Tensor) -> tuple[int, int]:
        """(tokens, dim) of one aux row under the method, drawn with a throwaway generator (the attack's own
        stream of draws is left as it is)."""
        if self.obfuscation == "none":
            return int(aux_tokens.shape[1]), int(aux_tokens.shape[2])
        method = registry.get(self.obfuscation)
        options: dict[str, Any] = {"matrix": self.matrix} if "matrix" in method.options else {}
        geometry = registry.Geometry(int(aux_tokens.shape[1]), int(aux_tokens.shape[2]), 0)
        with torch.no_grad():
            out = method.random(geometry, torch.Generator().manual_seed(0), **options)(aux_tokens[:1].float())
        return int(out.shape[1]), int(out.shape[2])

    def _random_obfuscation(self, tokens: int, dim: int):
        method = registry.get(self.obfuscation)
        options: dict[str, Any] = {"matrix": self.matrix} if "matrix" in method.options else {}
        gen = torch.Generator().manual_seed(self.seed)
        geometry = registry.Geometry(tokens, dim, 0)

        def transform(x: torch.Tensor) -> torch.Tensor:
            return method.random(geometry, gen, **options).to(x.device)(x)

        return transform

    def on(self, view: View, command: str | None = None) -> AttackResult:
        r = self.run(*view.need("aux_tokens", "aux_labels", "target"))
        return self.result(r.leakage, command, r, obfuscation=r.obfuscation, matrix=r.matrix, aux_rows=r.aux_rows,
                           aux_identities=r.aux_identities, seconds=r.seconds, config=r.config)

    def run(self, aux_tokens: torch.Tensor, aux_labels: torch.Tensor, target: Target) -> ExpectationResult:
        """``aux_tokens`` (n, N, D): clean ExtNet tokens of the adversary's auxiliary images."""
        if aux_tokens.ndim != 3 or self._output_shape(aux_tokens) != target.token_shape:
            raise ValueError(f"aux_tokens under {self.obfuscation} must be (n, {target.token_shape[0]}, "
                             f"{target.token_shape[1]}) like the target features, got {tuple(aux_tokens.shape)}")
        start = time.time()
        tokens, dim = aux_tokens.shape[1:]  # the clean geometry (XNN-H's output has another shape)
        transform = self._random_obfuscation(tokens, dim) if self.obfuscation != "none" else None
        recnet = fit_recnet(aux_tokens, aux_labels, self.recnet_cfg, transform, self.device)
        leak = identity_leakage(target, recnet_embedder(recnet))
        return ExpectationResult(leak.rate, leak.chance, leak, self.obfuscation, self.matrix, len(aux_tokens),
                                 int(torch.unique(aux_labels).numel()), time.time() - start,
                                 {"recnet": vars(self.recnet_cfg).copy(), "seed": self.seed})
