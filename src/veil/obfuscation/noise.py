"""XNN-d's noise (paper section 4): the trained noise encoder, and its public random stand-in.

The client's feature is ``LayerNorm(ExtNet(x)) + noise`` (``veil.xnnd.generator.FeatureGenerator``).
The noise is added to ExtNet's tokens, so as an obfuscation it acts at the ``tokens`` level; what
makes it secret is not a key but the trained weights of :class:`NoiseEncoder` (stage 1,
``veil xnnd train``), so the registry has no ``from_key`` for it. :class:`RandomNoise` is what an
adversary can draw without those weights: noise of the public bound ``eps`` with no structure,
redrawn for every batch (the expectation attack over the noise).

Both rescale each token's noise to RMS ``eps`` (zero mean over the feature dimension): a hard
bound, so the noised feature is never more than ``eps`` away, per token in RMS, from the clean one
(whose RMS is 1 after the affine-free LayerNorm).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from veil.errors import VeilError
from veil.models.dlib_resnet import DlibExtNet
from veil.models.extractor import AnyExtNet, ExtNet
from veil.obfuscation.base import Obfuscation


def bound_noise(raw: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero-mean, per-token RMS ``eps`` noise from any raw tokens (B, N, D)."""
    raw = raw - raw.mean(dim=-1, keepdim=True)
    return eps * raw / raw.pow(2).mean(dim=-1, keepdim=True).add(1e-6).sqrt()


class NoiseEncoder(nn.Module):
    """Images -> noise tokens (B, N, D) with per-token RMS ``eps``; ExtNet's architecture, trainable.

    It starts from ExtNet's public weights (the same stem and first blocks) and is then trained
    adversarially. BatchNorm layers use their running statistics in training as at inference, so a
    feature depends on its image only, never on the rest of the batch.
    """

    mean: torch.Tensor  # buffers, typed for the checker
    std: torch.Tensor

    def __init__(self, ext: AnyExtNet, eps: float) -> None:
        super().__init__()
        inner = copy.deepcopy(ext)
        self.img_size = ext.cfg.img_size
        self.eps = float(eps)
        self.trunk: DlibExtNet | None = None
        if isinstance(inner, DlibExtNet):  # a CNN ExtNet (dlib's face ResNet): its trunk, made trainable
            self.trunk = inner
            self.requires_grad_(True)
            return
        if not isinstance(inner, ExtNet):
            raise VeilError(f"the noise encoder copies a ViT or dlib ExtNet, not a {type(ext).__name__}")
        self.patch_embed: nn.Module = inner.patch_embed
        self.cls_token = inner.cls_token
        self.pos_embed: torch.Tensor = inner.pos_embed
        self.norm_pre = inner.norm_pre
        self.blocks = inner.blocks
        self.no_embed_class = inner.no_embed_class
        self.register_buffer("mean", inner.mean.clone(), persistent=False)
        self.register_buffer("std", inner.std.clone(), persistent=False)
        self.requires_grad_(True)
        self._freeze_batchnorm()

    def _freeze_batchnorm(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
                m.requires_grad_(False)

    def train(self, mode: bool = True) -> NoiseEncoder:
        super().train(mode)
        self._freeze_batchnorm()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.trunk is not None:
            return bound_noise(self.trunk.feature_map(images).flatten(2).transpose(1, 2), self.eps)
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = self.patch_embed((x - self.mean) / self.std)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)] if self.cls_token is not None else []
        if self.no_embed_class:
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        raw = self.blocks(self.norm_pre(x))
        return bound_noise(raw, self.eps)


class RandomNoise(Obfuscation):
    """ExtNet tokens -> LayerNorm(tokens) + fresh Gaussian noise of per-token RMS ``eps``: the public simulation."""

    method = "noise"
    level = "tokens"

    def __init__(self, eps: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.eps = float(eps)
        self.generator = generator

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.layer_norm(tokens, tokens.shape[-1:])
        noise = torch.randn(x.shape, generator=self.generator).to(x.device)
        return x + bound_noise(noise, self.eps)

    def public_info(self) -> dict:
        return {"method": self.method, "eps": self.eps}
