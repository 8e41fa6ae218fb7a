"""Black-box attack on XNN-d (paper section 5.3), and an expectation attack over the noise.

The eavesdropper may *query* the client's feature generator FG with its own images (an auxiliary
identity group disjoint from the owner's) but never sees FG's weights: it receives a callable,
images -> features, and nothing else. It builds (feature, label) pairs, trains its own RecNet on
them (CosFace, the owner's own recipe), and identifies the owner's intercepted features against a
gallery that is itself made of FG features (it queries FG with one photo of each of the owner's
persons: the paper's strong-adversary protocol of section 5.1). ``curve`` repeats the attack with
fewer queries. Each image is sent twice (as is and mirrored), so queries = 2 x images.

:class:`NoiseExpectationAttack` needs no queries: knowing the public ExtNet and the public bound
``eps``, it trains on clean auxiliary tokens plus fresh random noise of that bound every batch and
hopes the owner's noise looks like one more draw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder
from veil.metrics import Rate
from veil.obfuscation import registry

Query = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class BlackBoxPoint:
    images: int
    queries: int
    identities: int
    rate: Rate
    chance: float
    leakage: LeakageResult
    seconds: float

    def as_dict(self) -> dict:
        return {"images": self.images, "queries": self.queries, "identities": self.identities,
                **self.leakage.as_dict(), "seconds": self.seconds}


@dataclass
class BlackBoxResult:
    """The attack with every image of the auxiliary group (``rate``), and the curve over query budgets."""

    rate: Rate
    chance: float
    points: list[BlackBoxPoint]
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        last = self.points[-1]
        return {**last.as_dict(), "curve": [p.as_dict() for p in self.points], "config": self.config}


def _subset(labels: torch.Tensor, images: int, seed: int) -> torch.Tensor:
    """``images`` indices drawn at random (seeded); every prefix of the same seed is nested, so curves are monotone
    in what the attacker holds."""
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    return order[:images].sort().values


class BlackBoxAttack(Attack):
    """Query FG with auxiliary images, train a RecNet on the answers, identify the owner's intercepted features."""

    name = "black_box"
    holdings = ("query access to the client's feature generator (query)", "labelled auxiliary images (aux_images)",
                "the owner's intercepted features (target)")

    def on(self, view: View, command: str | None = None) -> AttackResult:
        query, images, labels, target = view.need("query", "aux_images", "aux_labels", "target")
        r = self.run(query, images, labels, target)
        d = r.as_dict()
        return self.result(r.points[-1].leakage, command, r, curve=d["curve"], config=d["config"])

    def __init__(self, recnet: AttackRecNetConfig | None = None, flip: bool = True, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.recnet_cfg = params.recnet_config(recnet, AttackRecNetConfig())
        self.flip = bool(flip)
        self.seed = params.non_negative_int("seed", seed)
        self.device = torch.device(device)

    def _query_all(self, query: Query, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = query(images)
        if feats.ndim != 3 or len(feats) != len(images):
            raise ValueError(f"query must return (n, tokens, dim) features for n images, got {tuple(feats.shape)}")
        return feats, (query(images.flip(-1)) if self.flip else None)

    def point(self, feats: torch.Tensor, flipped: torch.Tensor | None, labels: torch.Tensor, target: Target,
              images: int) -> BlackBoxPoint:
        """Train on the answers to the first ``images`` queries (a seeded random subset) and score the target."""
        start = time.time()
        idx = _subset(labels, images, self.seed)
        _, y = torch.unique(labels[idx], return_inverse=True)
        x = feats[idx]
        if flipped is not None:
            x, y = torch.cat([x, flipped[idx]]), torch.cat([y, y])
        recnet = fit_recnet(x, y, self.recnet_cfg, None, self.device)
        leak = identity_leakage(target, recnet_embedder(recnet))
        return BlackBoxPoint(images, images * (2 if flipped is not None else 1), int(y.max()) + 1, leak.rate,
                             leak.chance, leak, time.time() - start)

    def run(self, query: Query, aux_images: torch.Tensor, aux_labels: torch.Tensor, target: Target,
            budgets: Sequence[int] = ()) -> BlackBoxResult:
        """``budgets``: numbers of auxiliary images for the query-count curve; the full set is always the last point."""
        if aux_images.ndim != 4 or len(aux_images) != len(aux_labels):
            raise ValueError(f"aux_images must be (n, 3, H, W) with n labels, got {tuple(aux_images.shape)} "
                             f"and {len(aux_labels)}")
        sizes = sorted({params.positive_int("budget", b) for b in budgets if b < len(aux_images)} | {len(aux_images)})
        feats, flipped = self._query_all(query, aux_images)
        if tuple(feats.shape[1:]) != target.token_shape:
            raise ValueError(f"query features {tuple(feats.shape[1:])} differ from target {target.token_shape}")
        labels = torch.as_tensor(aux_labels, dtype=torch.long)
        points = [self.point(feats, flipped, labels, target, n) for n in sizes]
        return BlackBoxResult(points[-1].rate, points[-1].chance, points,
                              {"recnet": vars(self.recnet_cfg).copy(), "flip": self.flip, "seed": self.seed})


class NoiseExpectationAttack(Attack):
    """Train on public clean tokens (LayerNorm'd) plus random noise of the public bound, redrawn every batch."""

    name = "noise_expectation"
    holdings = ("public ExtNet", "the public noise bound eps", "labelled auxiliary tokens (aux_tokens, aux_labels)",
                "the owner's intercepted features (target)")

    def __init__(self, eps: float, recnet: AttackRecNetConfig | None = None, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.eps = params.non_negative_float("eps", eps)
        self.recnet_cfg = params.recnet_config(recnet, AttackRecNetConfig())
        self.seed = params.non_negative_int("seed", seed)
        self.device = torch.device(device)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        leak, extra = self._attack(*view.need("aux_tokens", "aux_labels", "target"))
        return self.result(leak, command, None, **extra)

    def run(self, aux_tokens: torch.Tensor, aux_labels: torch.Tensor, target: Target) -> dict:
        """``aux_tokens``: the public ExtNet tokens of the adversary's own images (any normalisation)."""
        leak, extra = self._attack(aux_tokens, aux_labels, target)
        return {**leak.as_dict(), **extra}

    def _attack(self, aux_tokens: torch.Tensor, aux_labels: torch.Tensor,
                target: Target) -> tuple[LeakageResult, dict]:
        start = time.time()
        gen = torch.Generator().manual_seed(self.seed)
        eps = self.eps
        _, tokens, dim = aux_tokens.shape
        transform = registry.get("noise").random(registry.Geometry(tokens, dim, 0), gen, eps=eps)
        recnet = fit_recnet(aux_tokens, aux_labels, self.recnet_cfg, transform, self.device)
        leak = identity_leakage(target, recnet_embedder(recnet))
        return leak, {"eps": eps, "aux_rows": len(aux_tokens), "seconds": time.time() - start}
