"""The adversary's re-creation of each protection with its own public randomness (expectation attack).

The expectation attack (XNN paper, section 5.2) trains a recogniser on auxiliary faces protected the
way the owner protects theirs, but with *fresh random* parameters, so that it learns whatever survives
every draw of the secret. Each method's public description (the store manifest's ``public_info``) is
enough to simulate it:

- none: the auxiliary tokens as they are (plain transfer);
- XNN: a fresh permutation and matrix every batch;
- InstaHide: fresh mixes (auxiliary + public images) and sign masks, then the public ExtNet; the
  encodings are drawn ahead of training (``encodings`` per image) because ExtNet dominates the cost;
- NeuraCrypt: a fresh random encoder and per-sample shuffle every batch.

A :class:`Simulation` is exactly what :func:`~veil.attacks.recnet_fit.fit_recnet` consumes. Nothing here
touches the owner's key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from veil.attacks.recnet_fit import AttackRecNetConfig, BatchTransform, PairTransform, extract_tokens, fit_recnet
from veil.models.extractor import ExtNet
from veil.models.recnet import RecNet
from veil.obfuscation.instahide import InstaHide
from veil.obfuscation.neuracrypt import NeuraCrypt
from veil.obfuscation.randomness import TorchRandomness
from veil.obfuscation.xnn import XNN


@dataclass
class Simulation:
    """Training inputs (tokens or images), labels (indices or soft targets) and per-batch randomisation."""

    inputs: torch.Tensor
    labels: torch.Tensor
    transform: BatchTransform | None = None
    mixer: PairTransform | None = None
    classes: int | None = None

    def fit(self, cfg: AttackRecNetConfig, device: torch.device | str = "cpu") -> RecNet:
        return fit_recnet(self.inputs, self.labels, cfg, self.transform, device, self.mixer, self.classes)


def simulate_none(aux_tokens: torch.Tensor, labels: torch.Tensor) -> Simulation:
    return Simulation(aux_tokens, labels)


def simulate_xnn(aux_tokens: torch.Tensor, labels: torch.Tensor, matrix: str = "orthogonal",
                 seed: int = 0) -> Simulation:
    gen = torch.Generator().manual_seed(seed)
    _, tokens, dim = aux_tokens.shape

    def transform(x: torch.Tensor) -> torch.Tensor:
        return XNN.random(tokens, dim, matrix, gen).to(x.device)(x)

    return Simulation(aux_tokens, labels, transform)


def simulate_instahide(ext: ExtNet, aux_images: torch.Tensor, labels: torch.Tensor, public: torch.Tensor, k: int,
                       cap: float = 0.65, encodings: int = 2, seed: int = 0,
                       device: torch.device | str = "cpu") -> Simulation:
    """``encodings`` random InstaHide encodings of every auxiliary image (half of them mirrored), as tokens."""
    classes = int(labels.max()) + 1
    onehot = F.one_hot(labels, classes).float()
    ih = InstaHide(k, public, cap, TorchRandomness(seed))
    tokens, targets = [], []
    for e in range(encodings):
        imgs = aux_images.flip(-1) if e % 2 else aux_images
        mixed, soft = ih.mix(imgs, onehot)
        tokens.append(extract_tokens(ext, mixed, device=device))
        targets.append(soft)
    return Simulation(torch.cat(tokens), torch.cat(targets), classes=classes)


def simulate_neuracrypt(aux_images: torch.Tensor, labels: torch.Tensor, patch: int = 16, dim: int = 256,
                        depth: int = 2, seed: int = 0) -> Simulation:
    """A fresh random NeuraCrypt encoder for every batch of auxiliary images (mirrors included)."""
    gen = torch.Generator().manual_seed(seed)
    shuffles = TorchRandomness(seed + 1)
    img_size = int(aux_images.shape[-1])
    images = torch.cat([aux_images, aux_images.flip(-1)])

    def transform(x: torch.Tensor) -> torch.Tensor:
        return NeuraCrypt.random(img_size, patch, dim, depth, gen, shuffles).to(x.device)(x)

    return Simulation(images, torch.cat([labels, labels]), transform)


__all__ = ["Simulation", "simulate_none", "simulate_xnn", "simulate_instahide", "simulate_neuracrypt"]
