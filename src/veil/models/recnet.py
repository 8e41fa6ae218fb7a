"""RecNet: the recognition network the cloud trains on (obfuscated) tokens.

ViT blocks with no class token and no position embedding (the paper's choice: the cloud sees
tokens in a secret order, so positions mean nothing to it), mean-pooled into a face embedding.
A learned linear projection of each token comes first; the cloud does not know the owner's
mixing matrix M, but a linear layer can absorb any invertible M, so obfuscation costs RecNet no
expressiveness. With no position embedding and mean pooling, RecNet is invariant to the patch
permutation as well.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from timm.models.vision_transformer import Block
from torch import nn

from veil.errors import VeilError
from veil.io import read_safetensors, read_safetensors_metadata, save_safetensors


@dataclass
class RecNetConfig:
    in_tokens: int
    in_dim: int
    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    emb_dim: int = 128
    drop_path: float = 0.1
    init: str = "random"
    norms: bool = True  # False: no LayerNorm or BatchNorm, a plain linear map (``veil.train.closed_form``)

    def __post_init__(self) -> None:
        if self.init not in ("random", "identity"):
            raise VeilError(f"RecNet init must be 'random' or 'identity', got {self.init!r}")
        if self.init == "identity" and not self.in_dim == self.dim == self.emb_dim:
            raise VeilError(f"identity init needs in_dim == dim == emb_dim, got {self.in_dim}, {self.dim}, "
                            f"{self.emb_dim}")


class RecNetShape(Protocol):
    """The architecture fields every RecNet recipe carries (the cloud's, the attacker's, XNN-d's)."""

    dim: int
    depth: int
    num_heads: int
    emb_dim: int


@dataclass
class RecNetArch:
    """A bare architecture, for a RecNet that has no training recipe of its own (XNN-d's stage-1 adversary)."""

    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    emb_dim: int = 128


def build_recnet(in_tokens: int, in_dim: int, recipe: RecNetShape) -> RecNet:
    """The one place a RecNet is built: input shape from the data, architecture from a training recipe.

    ``init='identity'`` (the recipe for a strong pre-trained ExtNet) sets the width and the embedding to the
    token width so the network can start as mean pooling.

    Why one place: the cloud (``train.cloud``), the adversary (``attacks.recnet_fit``) and XNN-d's
    distillation (``xnnd.distill``) must train *the same* network, or leakage would be measured with a
    different tool than the owner's utility.
    """
    init = getattr(recipe, "init", "random")
    dim, emb_dim = (in_dim, in_dim) if init == "identity" else (recipe.dim, recipe.emb_dim)
    return RecNet(RecNetConfig(in_tokens, in_dim, dim, recipe.depth, recipe.num_heads, emb_dim, init=init))


class RecNet(nn.Module):
    """Tokens (B, N, D_in) -> L2-normalisable embedding (B, emb_dim)."""

    def __init__(self, cfg: RecNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # norms=False drops the normalisation layers: with depth 0 the network is then linear in the mean of
        # the tokens, so an orthogonal XNN map of the tokens can be absorbed exactly (closed_form).
        self.in_norm: nn.Module = nn.LayerNorm(cfg.in_dim) if cfg.norms else nn.Identity()
        self.proj = nn.Linear(cfg.in_dim, cfg.dim)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.num_heads, qkv_bias=True, drop_path=r) for r in rates])
        self.norm: nn.Module = nn.LayerNorm(cfg.dim) if cfg.norms else nn.Identity()
        self.head = nn.Linear(cfg.dim, cfg.emb_dim)
        self.bn: nn.Module = nn.BatchNorm1d(cfg.emb_dim) if cfg.norms else nn.Identity()
        if cfg.init == "identity":
            # Start as mean pooling of the (normalised) tokens: with a strong pre-trained ExtNet that is
            # already a good face embedding, and training learns a correction instead of a new metric
            # from a few hundred identities. Generic: it assumes nothing about the owner's key.
            for lin in (self.proj, self.head):
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.cfg.in_dim:
            raise VeilError(f"RecNet expects tokens (batch, {self.cfg.in_tokens}, {self.cfg.in_dim}), "
                            f"got {tuple(tokens.shape)}")
        x = self.blocks(self.proj(self.in_norm(tokens.float())))
        return self.bn(self.head(self.norm(x).mean(dim=1)))


def save_recnet(model: RecNet, path: str | Path, info: dict) -> Path:
    """Weights as safetensors; the config and provenance (key fingerprint, store digest) as metadata."""
    meta = {"format": "veil-recnet", "config": json.dumps(asdict(model.cfg)), "info": json.dumps(info)}
    return save_safetensors(model.state_dict(), path, meta)


def load_recnet(path: str | Path) -> tuple[RecNet, dict]:
    """The model (eval mode) and its provenance dict."""
    meta = read_safetensors_metadata(path)
    if meta.get("format") != "veil-recnet":
        raise VeilError(f"{path} is not a Veil RecNet file")
    model = RecNet(RecNetConfig(**json.loads(meta["config"])))
    try:
        model.load_state_dict(read_safetensors(path))
    except RuntimeError as exc:
        raise VeilError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    return model.eval(), json.loads(meta.get("info", "{}"))
