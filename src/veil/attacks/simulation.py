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
touches the owner's key. :func:`simulate` dispatches on the registered method's *level*, not its name
(``veil.obfuscation.registry``), so a new method of an existing level needs no code here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from veil.attacks.recnet_fit import AttackRecNetConfig, BatchTransform, PairTransform, extract_tokens, fit_recnet
from veil.models.extractor import Extractor
from veil.models.recnet import RecNet
from veil.obfuscation import registry
from veil.obfuscation.randomness import TorchRandomness


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


def simulate_tokens(method: registry.Method, aux_tokens: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                    **options) -> Simulation:
    """A tokens-level method: fresh public parameters every batch on clean auxiliary tokens (none: as they are)."""
    if method.name == "none":
        return Simulation(aux_tokens, labels)
    gen = torch.Generator().manual_seed(seed)
    _, tokens, dim = aux_tokens.shape
    geometry = registry.Geometry(tokens, dim, 0)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return method.random(geometry, gen, **options).to(x.device)(x)

    return Simulation(aux_tokens, labels, transform)


def simulate_image(method: registry.Method, ext: Extractor, aux_images: torch.Tensor, labels: torch.Tensor,
                   public: torch.Tensor | None, encodings: int = 2, seed: int = 0,
                   device: torch.device | str = "cpu", **options) -> Simulation:
    """An image-level method: ``encodings`` random encodings of every auxiliary image (half of them mirrored),
    through the public ExtNet, drawn ahead of training because ExtNet dominates the cost."""
    classes = int(labels.max()) + 1
    onehot = F.one_hot(labels, classes).float()
    geometry = registry.Geometry(*ext.token_shape, int(aux_images.shape[-1]), public)
    obf = method.random(geometry, None, TorchRandomness(seed), **options)
    tokens, targets = [], []
    for e in range(encodings):
        imgs = aux_images.flip(-1) if e % 2 else aux_images
        if obf.mixes_labels:
            mixed, soft = obf.mix(imgs, onehot)
        else:
            mixed, soft = obf(imgs), onehot
        tokens.append(extract_tokens(ext, mixed, device=device))
        targets.append(soft if soft is not None else onehot)
    return Simulation(torch.cat(tokens), torch.cat(targets), classes=classes)


def simulate_encoder(method: registry.Method, aux_images: torch.Tensor, labels: torch.Tensor, dim: int,
                     seed: int = 0, **options) -> Simulation:
    """An encoder-level method: a fresh random encoder for every batch of auxiliary images (mirrors included)."""
    gen = torch.Generator().manual_seed(seed)
    shuffles = TorchRandomness(seed + 1)
    geometry = registry.Geometry(0, dim, int(aux_images.shape[-1]))
    images = torch.cat([aux_images, aux_images.flip(-1)])

    def transform(x: torch.Tensor) -> torch.Tensor:
        return method.random(geometry, gen, shuffles, **options).to(x.device)(x)

    return Simulation(images, torch.cat([labels, labels]), transform)


def simulate(method: str, ext: Extractor, aux_images: torch.Tensor, labels: torch.Tensor, clean: torch.Tensor,
             public: torch.Tensor | None = None, encodings: int = 2, seed: int = 0,
             device: torch.device | str = "cpu", **options) -> Simulation:
    """The expectation attack's training set for any registered method (a name, ``name:opt=v`` or table label).

    ``clean``: public ExtNet tokens of ``aux_images`` then of their mirrors. ``options`` fill in what
    ``method`` does not say; options the method does not have are ignored.
    """
    spec, named = registry.parse(method)
    opts = {**{k: v for k, v in options.items() if k in spec.options}, **named}
    if spec.level == "tokens":
        return simulate_tokens(spec, clean, torch.cat([labels, labels]), seed, **opts)
    if spec.level == "image":
        return simulate_image(spec, ext, aux_images, labels, public, encodings, seed, device, **opts)
    return simulate_encoder(spec, aux_images, labels, ext.token_shape[1], seed, **opts)


def simulate_none(aux_tokens: torch.Tensor, labels: torch.Tensor) -> Simulation:
    return simulate_tokens(registry.get("none"), aux_tokens, labels)


def simulate_xnn(aux_tokens: torch.Tensor, labels: torch.Tensor, matrix: str = "orthogonal",
                 seed: int = 0) -> Simulation:
    return simulate_tokens(registry.get("xnn"), aux_tokens, labels, seed, matrix=matrix)


def simulate_instahide(ext: Extractor, aux_images: torch.Tensor, labels: torch.Tensor, public: torch.Tensor, k: int,
                       cap: float = 0.65, encodings: int = 2, seed: int = 0,
                       device: torch.device | str = "cpu") -> Simulation:
    """``encodings`` random InstaHide encodings of every auxiliary image (half of them mirrored), as tokens."""
    return simulate_image(registry.get("instahide"), ext, aux_images, labels, public, encodings, seed, device,
                          k=k, cap=cap)


def simulate_neuracrypt(aux_images: torch.Tensor, labels: torch.Tensor, patch: int = 16, dim: int = 256,
                        depth: int = 2, seed: int = 0) -> Simulation:
    """A fresh random NeuraCrypt encoder for every batch of auxiliary images (mirrors included)."""
    return simulate_encoder(registry.get("neuracrypt"), aux_images, labels, dim, seed, patch=patch, depth=depth)


__all__ = ["Simulation", "simulate", "simulate_tokens", "simulate_image", "simulate_encoder", "simulate_none",
           "simulate_xnn", "simulate_instahide", "simulate_neuracrypt"]
