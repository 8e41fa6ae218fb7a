"""InstaHide's invariant attack (Carlini et al., "Is Private Learning Possible with Instance Encoding?", 2021).

The invariant (``docs/attacks.md``, invariant audit): InstaHide multiplies every pixel of a mixture, taken in
[-1, 1], by a one-time random sign, so ``|encoding| = |lambda_1 x_1 + ... + lambda_k x_k|`` pixel by pixel: the
sign mask, the whole of InstaHide's per-instance secret, vanishes under the absolute value. What is left is a
mixture of the private image with ``k - 1`` others and coefficients capped at 0.65, so the private image stays
a sizeable, un-hidden part of it. The adversary therefore works on ``|.|`` images only:

1. **clustering** (``neighbours``): an image is encoded many times (a fresh mix every epoch of training), and
   the encodings of one private image share its exact ``|x|`` while their partners differ. Faces share their
   coarse layout, so encodings are compared on the *detail* of ``|.|`` (each colour channel's ``|2 p - 1|``
   minus its ``detail`` x ``detail`` local mean, then 2 x 2 averaged): cosine on these finds siblings (a plain
   version of the paper's graph clustering, whose similarity is a trained network). Each encoding's ``|.|``
   image is averaged with its ``neighbours`` most similar encodings, which averages the partners out and
   leaves an estimate of ``|x|`` of its private image;
2. **identification**: the estimate and the adversary's clean gallery photos (one per person, also taken to
   ``|2 g - 1|``, and the estimate brought to the gallery's mean and contrast) are embedded by a public face
   recogniser (``identifier``: dlib's network whole; without one, the pixels themselves) and each encoding is
   named by the most cosine-similar gallery photo: top-1 over the encodings, n, Wilson 95% CI, chance.

What the adversary holds: InstaHide's encodings (the images the owner releases or trains on: the InstaHide
paper's and challenge's threat model) and its own clean photos of the persons. In Veil's pipeline the owner
runs the public ExtNet on the encodings and the cloud receives tokens; tokens are a function of the encodings,
so this attack bounds what the encodings themselves hide, and reaches the cloud's view only through an
inversion of the public ExtNet (``white_box``). It needs no key (InstaHide has none), no training and no
knowledge of which encodings share an image or of the public pool.

Where the invariant is broken (a one-time mask that is not a sign flip, e.g. a uniform additive pad modulo
1 in pixel space) ``|.|`` keeps nothing of the image and the attack falls to chance: it measures exactly
what the sign flip leaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.leakage import Embedder, LeakageResult, Target
from veil.metrics import top1


def image_target(gallery_images: torch.Tensor, gallery_labels: torch.Tensor, encodings: torch.Tensor,
                 encoding_labels: torch.Tensor) -> Target:
    """A :class:`Target` of images: the clean gallery first, then the encodings as probes.

    Images are (n, C, S, S), uint8 or float in [0, 1] (what ``InstaHide.mix`` returns; uint8 as an owner would
    store them keeps 150 px encodings small); a Target holds (n, tokens, dim), so each image is stored as
    (C, S * S) and the attack restores its square side.
    """
    if gallery_images.shape[1:] != encodings.shape[1:] or encodings.ndim != 4:
        raise ValueError(f"gallery {tuple(gallery_images.shape)} and encodings {tuple(encodings.shape)} must be "
                         "images of one shape (n, C, S, S)")
    if gallery_images.dtype != encodings.dtype:
        gallery_images, encodings = _unit(gallery_images), _unit(encodings)
    features = torch.cat([x.reshape(len(x), x.shape[1], -1) for x in (gallery_images, encodings)])
    labels = torch.cat([torch.as_tensor(gallery_labels), torch.as_tensor(encoding_labels)]).long()
    gallery = torch.arange(len(gallery_images))
    return Target(features, labels, gallery, torch.arange(len(gallery_images), len(labels)))


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def abs_images(images: torch.Tensor) -> torch.Tensor:
    """(n, C, S*S) or (n, C, S, S) images in [0, 1] (or uint8) -> (n, C, S, S) ``|2 p - 1|``: unchanged by any
    per-pixel, per-channel sign flip of ``2 p - 1``."""
    x = _unit(images)
    if x.ndim == 3:
        side = math.isqrt(x.shape[2])
        if side * side != x.shape[2]:
            raise ValueError(f"images must be square: {x.shape[2]} pixels a channel")
        x = x.reshape(len(x), x.shape[1], side, side)
    return (2 * x - 1).abs()


def detail(images: torch.Tensor, width: int = 9, batch: int = 256) -> torch.Tensor:
    """(n, values) float32: ``|.|`` of each image minus its ``width`` x ``width`` local mean, 2 x 2 averaged, centred
    and of unit norm; the fine structure that tells one photo from another of a similar face."""
    out = []
    for i in range(0, len(images), batch):
        a = abs_images(images[i:i + batch])
        d = a - F.avg_pool2d(a, width, 1, width // 2, count_include_pad=False)
        out.append(F.avg_pool2d(d, 2).flatten(1))
    rows = torch.cat(out)
    rows = rows - rows.mean(0)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest(rows: torch.Tensor, neighbours: int, queries: torch.Tensor | None = None,
            batch: int = 1024) -> torch.Tensor:
    """(q, neighbours + 1): for each query row (default: every row) its own index first, then its ``neighbours``
    most cosine-similar other rows (``rows`` of unit norm; blocks of ``batch`` queries keep memory at
    ``batch x n``)."""
    queries = torch.arange(len(rows)) if queries is None else queries
    m = min(neighbours, len(rows) - 1)
    out = []
    for i in range(0, len(queries), batch):
        own = queries[i:i + batch]
        sim = rows[own] @ rows.T
        sim[torch.arange(len(own)), own] = float("inf")
        out.append(sim.topk(m + 1, dim=1).indices)
    return torch.cat(out)


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1)


@torch.no_grad()
def embed_estimates(images: torch.Tensor, members: torch.Tensor, embed: Embedder, mean: float, std: float,
                    batch: int = 64) -> torch.Tensor:
    """Embed, batch by batch, each row's estimate of ``|x|``: the mean ``|.|`` image of its members, brought to
    the gallery's ``mean`` and ``std`` (a mixture's ``|.|`` is darker and flatter than a face's)."""
    out = []
    for i in range(0, len(members), batch):
        idx = members[i:i + batch]
        est = abs_images(images[idx.reshape(-1)])
        est = est.reshape(*idx.shape, *est.shape[1:]).mean(1)
        est = (est - est.mean(dim=(1, 2, 3), keepdim=True)) / est.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        out.append(embed((est * std + mean).clamp(0, 1)).float())
    return torch.cat(out)


@dataclass
class AbsResult:
    """The attack with clustering (``leakage``) and each encoding named on its own (``single``)."""

    leakage: LeakageResult
    single: LeakageResult
    neighbours: int
    detail: int
    sibling_precision: float | None = None


class InstaHideAbsAttack(Attack):
    """Name each InstaHide encoding from ``|encoding|``, averaged over its most similar encodings."""

    name = "instahide_abs"
    title = "|x| clustering (InstaHide's sign flips, Carlini et al. 2021)"
    label = "|x| clustering"
    holdings = ("InstaHide encodings of the owner's images, several per image as training re-mixes them "
                "(target probes, images in [0, 1])",
                "its own clean photos of the owner's persons, one each (target gallery)",
                "that the mask is a per-pixel sign flip (the design, public); no key, no pool, no grouping")

    def __init__(self, neighbours: int = 7, detail: int = 9, identifier: Embedder | None = None) -> None:
        self.neighbours = params.non_negative_int("neighbours", neighbours)
        self.detail = params.positive_int("detail", detail)
        self.identifier = identifier

    def on(self, view: View, command: str | None = None) -> AttackResult:
        (target,) = view.need("target")
        r = self.run(target)
        return self.result(r.leakage, command, r, invariant="|pixel| of each encoding (per-pixel sign flips)",
                           neighbours=self.neighbours, detail=self.detail, single=r.single.as_dict(),
                           identifier="public face recogniser" if self.identifier is not None else "pixels",
                           sibling_precision=r.sibling_precision)

    def run(self, target: Target, image_of: torch.Tensor | None = None,
            scored: torch.Tensor | None = None) -> AbsResult:
        """Clustered and single-encoding top-1 of the probes (encodings) against the gallery.

        ``scored``: which probes to name (indices into the probes; default all). Every encoding still serves
        as a neighbour; naming one encoding per private image keeps the n of distinct images (encodings of one
        image are not independent trials) and the cost of the recogniser down. ``image_of`` (optional, scoring
        only, never used by the attack): which private image each probe encodes, to report the fraction of
        chosen neighbours that truly share it (``sibling_precision``).
        """
        embed = self.identifier or _pixels
        images = target.features
        gallery = abs_images(images[target.gallery])
        mean, std = float(gallery.mean()), float(gallery.std())
        g = embed(gallery).float()
        g = g - g.mean(0) if self.identifier is None else g
        probes = images[target.probe]
        scored = torch.arange(len(probes)) if scored is None else scored
        g_lab, p_lab = target.labels[target.gallery], target.labels[target.probe][scored]

        def name(members: torch.Tensor) -> LeakageResult:
            e = embed_estimates(probes, members, embed, mean, std)
            rate, hits = top1(g, g_lab, e - e.mean(0) if self.identifier is None else e, p_lab)
            return LeakageResult(rate, target.chance, len(target.gallery), hits)

        single = name(scored.unsqueeze(1))
        if not self.neighbours:
            return AbsResult(single, single, 0, self.detail, None)
        members = nearest(detail(probes, self.detail), self.neighbours, scored)
        precision = None
        if image_of is not None:
            precision = float((image_of[members[:, 1:]] == image_of[scored][:, None]).float().mean())
        return AbsResult(name(members), single, self.neighbours, self.detail, precision)


__all__ = ["AbsResult", "InstaHideAbsAttack", "abs_images", "detail", "embed_estimates", "image_target", "nearest"]
