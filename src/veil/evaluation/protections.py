"""The owner's side of each method in the comparison: what it sends to the cloud, and how it encodes tests.

Every method ends in tokens that the same RecNet architecture is trained on:

==============  ==========================================================================
Vanilla+PE      public ExtNet tokens, as they are
XNN             ExtNet tokens -> ObfNet (the owner key's permutation and matrix)
IH(k)           InstaHide on pixels (one-time CSPRNG mixes and signs) -> public ExtNet
NC              the owner key's NeuraCrypt encoder (instead of ExtNet), CSPRNG patch shuffles
==============  ==========================================================================

Training rows are each image and its mirror (independently encoded for the one-time methods), as
the XNN store does. Test images (gallery and probes) are encoded once each, mirror separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from veil.attacks.recnet_fit import extract_tokens
from veil.keys import OwnerKey
from veil.models.extractor import Extractor
from veil.obfuscation import registry
from veil.obfuscation.base import Obfuscation


@dataclass
class TrainingRows:
    """What the cloud receives: tokens and labels (indices, or soft targets for mixed rows)."""

    tokens: torch.Tensor
    labels: torch.Tensor


class Protection:
    """One method as the owner runs it. ``obfuscation`` is the method behind Veil's common interface."""

    def __init__(self, name: str, ext: Extractor, obfuscation: Obfuscation | None = None) -> None:
        self.name = name
        self.ext = ext
        self.obfuscation = obfuscation

    @property
    def level(self) -> str:
        return self.obfuscation.level if self.obfuscation is not None else "tokens"

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 256, device: torch.device | str = "cpu") -> torch.Tensor:
        """Tokens of uint8 images as the owner sends them (one fresh draw of any one-time randomness)."""
        out = []
        obf = self.obfuscation
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            if obf is not None and self.level == "encoder":
                out.append(obf(x.to(device)).cpu())
                continue
            if obf is not None and self.level == "image":
                x = obf(x)
            t = extract_tokens(self.ext, x, batch_size, device=device)
            out.append(obf(t) if obf is not None and self.level == "tokens" else t)
        return torch.cat(out)

    def training_rows(self, images: torch.Tensor, labels: torch.Tensor,
                      device: torch.device | str = "cpu") -> TrainingRows:
        """Each image and its mirror, encoded for the cloud."""
        both = torch.cat([images, images.flip(-1)])
        both_labels = torch.cat([labels, labels])
        if self.obfuscation is not None and self.obfuscation.mixes_labels:
            onehot = F.one_hot(both_labels, int(labels.max()) + 1).float()
            chunks, targets = [], []
            for i in range(0, len(both), 256):
                mixed, soft = self.obfuscation.mix(both[i:i + 256], onehot[i:i + 256], both, onehot)
                assert soft is not None  # targets in, mixed targets out
                chunks.append(extract_tokens(self.ext, mixed, device=device))
                targets.append(soft)
            return TrainingRows(torch.cat(chunks), torch.cat(targets))
        return TrainingRows(self.encode(both, device=device), both_labels)


def protection(method: str, ext: Extractor, key: OwnerKey | None, public: torch.Tensor | None = None,
               **options) -> Protection:
    """The owner's side of any registered method (a name, ``name:opt=v`` or a table label such as ``IH(k=2)``).

    ``options`` fill in what the label does not say (e.g. InstaHide's ``cap``); options a method does not
    have are ignored here, so one call site can pass every method's settings.
    """
    spec, named = registry.parse(method)
    opts = {**{k: v for k, v in options.items() if k in spec.options}, **named}
    obf = spec.from_key(key, registry.Geometry.of(ext, public), **opts)
    return Protection(spec.display(**opts), ext, None if spec.name == "none" else obf)


def vanilla(ext: Extractor) -> Protection:
    return protection("none", ext, None)


def xnn(ext: Extractor, key: OwnerKey, matrix: str = "orthogonal") -> Protection:
    return protection("xnn", ext, key, matrix=matrix)
