"""A noise encoder over ExtNet's tokens: ``noise = g(LayerNorm(ExtNet(x)))``, bounded exactly like the image one.

The paper's noise encoder reads the image with ExtNet's architecture (``veil.obfuscation.noise.
NoiseEncoder``, still available). With dlib's face ResNet at 150 px, back-propagating through a
copy of the CNN for every stage-1 step costs hours on CPU. This encoder is the cheaper design: it
reads the clean tokens the client computes anyway, so stage 1 runs on cached tokens. Its noise is
still a deterministic, secret, trained function of the image (through ExtNet), added to the clean
tokens, and rescaled per token to RMS ``eps`` (``bound_noise``): the same bound, the same interface
to the server and to every attack. What it cannot use is image information that ExtNet's tokens
discard, which only matters if the noise needed it.

Architecture: a learned position embedding, ``depth`` pre-norm transformer blocks (timm's
``Block``, ``heads`` heads, MLP ratio ``mlp_ratio``) so the noise of a token may depend on the
others (``depth = 0``: none, each token's noise is a function of that token and its position),
and a two-layer MLP read-out (D -> ``mlp_ratio`` x D -> D, GELU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn

from veil.errors import VeilError
from veil.obfuscation.noise import bound_noise


@dataclass(frozen=True)
class TokenEncoderConfig:
    tokens: int
    dim: int
    depth: int = 1
    heads: int = 4
    mlp_ratio: float = 2.0

    def __post_init__(self) -> None:
        if int(self.depth) < 0:
            raise VeilError(f"token encoder depth must be >= 0, got {self.depth!r}")
        for name in ("tokens", "dim", "heads"):
            if int(getattr(self, name)) < 1:
                raise VeilError(f"token encoder {name} must be >= 1, got {getattr(self, name)!r}")
        if self.dim % self.heads:
            raise VeilError(f"token encoder dim ({self.dim}) must be divisible by heads ({self.heads})")


class TokenNoiseEncoder(nn.Module):
    """Clean tokens (B, N, D), LayerNorm'd -> noise (B, N, D), zero mean and RMS ``eps`` per token."""

    level = "tokens"

    def __init__(self, cfg: TokenEncoderConfig, eps: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.eps = float(eps)
        self.pos = nn.Parameter(torch.randn(1, cfg.tokens, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.heads, cfg.mlp_ratio, qkv_bias=True)
                                      for _ in range(cfg.depth)])
        hidden = max(1, int(cfg.mlp_ratio * cfg.dim))
        self.out = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))

    def config_dict(self) -> dict:
        return {"kind": "tokens", **asdict(self.cfg)}

    def forward(self, clean: torch.Tensor) -> torch.Tensor:
        if clean.shape[1:] != (self.cfg.tokens, self.cfg.dim):
            raise VeilError(f"token encoder expects (B, {self.cfg.tokens}, {self.cfg.dim}), got {tuple(clean.shape)}")
        return bound_noise(self.out(self.blocks(clean.float() + self.pos)), self.eps)
