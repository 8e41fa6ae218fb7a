"""Identity leakage of a reconstruction: does a face recogniser name the person in a reconstructed image?

Why: SSIM on aligned faces says little about privacy (the mean face alone scores about 0.5 there), and He et
al.'s 0.3 line is about pixels, not persons. What an owner needs to know is whether the reconstruction
*identifies* the victim. So a public face recogniser (dlib's network, whole) embeds each reconstruction and
a clean gallery of the victims (one *other* image of each victim identity, as a stranger's photo collection
would hold), and names the nearest gallery identity (Euclidean, as dlib does). Top-1 over the reconstructed
victims, with n, a Wilson 95% interval, and chance = 1 / gallery identities; beside it the same protocol on
the true victim images (the ceiling) and on the adversary's mean face (the prior).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from veil.metrics import Rate

Embed = Callable[[torch.Tensor], torch.Tensor]  # images in [0, 1], (n, 3, S, S) -> descriptors (n, d)


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@dataclass
class IdentityProbe:
    """The clean gallery of the victims and the recogniser; call it on reconstructions of the victims in order."""

    embed: Embed
    gallery_images: torch.Tensor
    gallery_labels: torch.Tensor
    victim_labels: torch.Tensor
    batch: int = 32

    def __post_init__(self) -> None:
        if len(self.gallery_images) != len(self.gallery_labels) or len(self.gallery_images) == 0:
            raise ValueError("the gallery needs one label per image and at least one image")
        if not set(self.victim_labels.tolist()) <= set(self.gallery_labels.tolist()):
            raise ValueError("every victim's identity must be in the gallery")
        self._gallery = self._descriptors(self.gallery_images)

    @property
    def chance(self) -> float:
        return 1.0 / len(set(self.gallery_labels.tolist()))

    @torch.no_grad()
    def _descriptors(self, images: torch.Tensor) -> torch.Tensor:
        x = _unit(images)
        return torch.cat([self.embed(x[i:i + self.batch]).float() for i in range(0, len(x), self.batch)])

    def __call__(self, reconstructions: torch.Tensor) -> dict:
        """Top-1 of the reconstructions against the clean gallery: rate, hits, n, ci95, chance."""
        if len(reconstructions) != len(self.victim_labels):
            raise ValueError(f"{len(reconstructions)} reconstructions for {len(self.victim_labels)} victims")
        emb = self._descriptors(reconstructions)
        named = self.gallery_labels[torch.cdist(emb, self._gallery).argmin(dim=1)]
        hits = named == self.victim_labels
        return {**Rate(int(hits.sum()), len(hits)).as_dict(), "chance": self.chance,
                "gallery": len(self.gallery_labels),
                "protocol": "dlib's whole network names each reconstruction by its nearest clean gallery image "
                            "(one other image per victim identity)"}

    def prior(self, aux_images: torch.Tensor) -> dict:
        """The same protocol on the adversary's mean auxiliary face for every victim (no features used)."""
        mean = _unit(aux_images).mean(0, keepdim=True)
        return self(mean.expand(len(self.victim_labels), *mean.shape[1:]).contiguous())


__all__ = ["Embed", "IdentityProbe"]
