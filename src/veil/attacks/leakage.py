"""Identity leakage (XNN paper, section 5.1): how often the adversary names the right person.

The owner's held-out test persons are split into a gallery (one image each) and probes (every
other image). The adversary receives the *obfuscated* features of both, as the owner's key made
them (the paper's own protocol: "the test set of the owner's dataset as the gallery"), and the
gallery's identity labels; it embeds every feature with whatever its attack learned and names
each probe by its nearest gallery embedding. Leakage is that top-1 rate, reported beside chance
(1 / gallery size): no leakage means chance, total leakage means 100%.

The adversary never receives the key: :class:`Target` holds tensors only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from veil.data.faceset import FaceSet
from veil.data.splits import gallery_probe
from veil.metrics import Rate, pack_hits, top1, unpack_hits

Embedder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Target:
    """What the adversary holds of the owner's test set: obfuscated tokens and the protocol's indices.

    ``features`` (n, N, D) are the owner's obfuscated ExtNet tokens; ``flipped`` (optional) the same
    for the mirrored images (the owner stores mirror copies too, so they are as available as the rest);
    ``labels`` identify persons only for scoring and for the gallery's names.
    """

    features: torch.Tensor
    labels: torch.Tensor
    gallery: torch.Tensor
    probe: torch.Tensor
    flipped: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 3:
            raise ValueError(f"features must be (n, tokens, dim), got {tuple(self.features.shape)}")
        if len(self.labels) != len(self.features):
            raise ValueError(f"labels: {len(self.labels)} for {len(self.features)} features")
        if self.flipped is not None and self.flipped.shape != self.features.shape:
            raise ValueError(f"flipped must match features {tuple(self.features.shape)}, "
                             f"got {tuple(self.flipped.shape)}")
        if len(self.gallery) == 0 or len(self.probe) == 0:
            raise ValueError("gallery and probe must both be non-empty")

    @property
    def token_shape(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])

    @property
    def chance(self) -> float:
        return 1.0 / len(self.gallery)

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                      flipped: torch.Tensor | None = None) -> Target:
        """Gallery/probe indices by the same rule as the owner's utility (``gallery_probe``, same seed)."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        names = [str(i) for i in range(int(labels.max()) + 1)] if len(labels) else []
        stub = FaceSet(torch.zeros(len(labels), 3, 1, 1, dtype=torch.uint8), labels, names)
        gallery, probe = gallery_probe(stub, seed)
        return cls(features, labels, gallery, probe, flipped)


@dataclass
class LeakageResult:
    """Top-1 rate with its Wilson interval, the chance level, and the per-probe hits (for paired stats).

    On disk (:meth:`as_dict`) the per-probe hits go under ``probe_hits``, packed (:func:`veil.metrics.pack_hits`),
    so a result read back still supports a paired bootstrap or McNemar test against another on the same
    probes. A file written before they were kept reads back with ``hits`` None.
    """

    rate: Rate
    chance: float
    gallery: int
    hits: torch.Tensor | None = None

    def as_dict(self) -> dict:
        d = {**self.rate.as_dict(), "chance": self.chance, "gallery": self.gallery}
        if self.hits is not None:
            d["probe_hits"] = pack_hits(self.hits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LeakageResult:
        """The counts :meth:`as_dict` wrote (rate and interval recomputed from hits and n), and the per-probe
        hits when recorded: a ``ValueError`` if they disagree with the counts."""
        rate = Rate(int(d["hits"]), int(d["n"]))
        hits = None
        if d.get("probe_hits") is not None:
            hits = unpack_hits(d["probe_hits"])
            if len(hits) != rate.n or int(hits.sum()) != rate.hits:
                raise ValueError(f"probe_hits hold {int(hits.sum())} of {len(hits)}, the counts say "
                                 f"{rate.hits} of {rate.n}")
        return cls(rate, float(d["chance"]), int(d["gallery"]), hits)


@torch.no_grad()
def identity_leakage(target: Target, embed: Embedder) -> LeakageResult:
    """Embed every target feature (plus its mirror when given, as the owner's utility does) and score top-1."""
    emb = embed(target.features)
    if target.flipped is not None:
        emb = emb + embed(target.flipped)
    rate, hits = top1(emb[target.gallery], target.labels[target.gallery], emb[target.probe],
                      target.labels[target.probe])
    return LeakageResult(rate, target.chance, len(target.gallery), hits)


def pooled_embedder(center: torch.Tensor | None = None) -> Embedder:
    """Mean of the tokens, minus a centre: the cheapest identifier, needing no training at all.

    Mean pooling ignores the token order, and cosine similarity is unchanged by an orthogonal map,
    so on an orthogonal-XNN gallery this identifier sees exactly what it sees on clean tokens.
    """

    def embed(tokens: torch.Tensor) -> torch.Tensor:
        pooled = tokens.float().mean(dim=1)
        return pooled - center if center is not None else pooled

    return embed
