"""Margin losses for face embeddings, from pytorch-metric-learning (not re-implemented here)."""

from __future__ import annotations

from pytorch_metric_learning.losses import CosFaceLoss
from torch import nn


def cosface(num_classes: int, emb_dim: int, margin: float = 0.35, scale: float = 32.0) -> nn.Module:
    """CosFace / AM-Softmax (the XNN paper's loss). It owns the class-weight matrix; optimise its parameters."""
    return CosFaceLoss(num_classes=num_classes, embedding_size=emb_dim, margin=margin, scale=scale)
