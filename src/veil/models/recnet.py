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

import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import Block
from torch import nn

from veil.errors import VeilError
from veil.models.extractor import _load_state, read_metadata


@dataclass
class RecNetConfig:
    in_tokens: int
    in_dim: int
    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    emb_dim: int = 128
    drop_path: float = 0.1


class RecNet(nn.Module):
    """Tokens (B, N, D_in) -> L2-normalisable embedding (B, emb_dim)."""

    def __init__(self, cfg: RecNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_norm = nn.LayerNorm(cfg.in_dim)
        self.proj = nn.Linear(cfg.in_dim, cfg.dim)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.Sequential(*[Block(cfg.dim, cfg.num_heads, qkv_bias=True, drop_path=r) for r in rates])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.emb_dim)
        self.bn = nn.BatchNorm1d(cfg.emb_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.cfg.in_dim:
            raise VeilError(f"RecNet expects tokens (batch, {self.cfg.in_tokens}, {self.cfg.in_dim}), "
                            f"got {tuple(tokens.shape)}")
        x = self.blocks(self.proj(self.in_norm(tokens.float())))
        return self.bn(self.head(self.norm(x).mean(dim=1)))


def save_recnet(model: RecNet, path: str | Path, info: dict) -> Path:
    """Weights as safetensors; the config and provenance (key fingerprint, store digest) as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "veil-recnet", "config": json.dumps(asdict(model.cfg)), "info": json.dumps(info)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_recnet(path: str | Path) -> tuple[RecNet, dict]:
    """The model (eval mode) and its provenance dict."""
    meta = read_metadata(path)
    if meta.get("format") != "veil-recnet":
        raise VeilError(f"{path} is not a Veil RecNet file")
    model = RecNet(RecNetConfig(**json.loads(meta["config"])))
    try:
        model.load_state_dict(_load_state(path))
    except RuntimeError as exc:
        raise VeilError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    return model.eval(), json.loads(meta.get("info", "{}"))
