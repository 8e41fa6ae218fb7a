"""Margin losses for face embeddings, from pytorch-metric-learning (not re-implemented here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import CosFaceLoss
from torch import nn


def cosface(num_classes: int, emb_dim: int, margin: float = 0.35, scale: float = 32.0) -> nn.Module:
    """CosFace / AM-Softmax (the XNN paper's loss). It owns the class-weight matrix; optimise its parameters."""
    return CosFaceLoss(num_classes=num_classes, embedding_size=emb_dim, margin=margin, scale=scale)


class SoftCosFace(nn.Module):
    """CosFace with soft targets (B, C), for mixed labels such as InstaHide's.

    logits = scale * (cos(emb, W_c) - margin * t_c), loss = -sum_c t_c log softmax(logits)_c. With a
    one-hot ``t`` this is exactly CosFace; pytorch-metric-learning's loss takes integer labels only.
    """

    def __init__(self, num_classes: int, emb_dim: int, margin: float = 0.35, scale: float = 32.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(emb_dim, num_classes))
        self.margin = margin
        self.scale = scale

    def forward(self, emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(emb, dim=1) @ F.normalize(self.W, dim=0)
        logits = self.scale * (cos - self.margin * targets)
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
