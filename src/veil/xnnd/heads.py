"""A cosine classifier with an additive margin (CosFace), exposing its logits.

Distillation needs logits from teacher and student alike; pytorch-metric-learning's CosFaceLoss
hides them, so this small head computes ``scale * (cos - margin * onehot)`` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    def __init__(self, emb_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.35) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, emb_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits without margin: what inference and distillation compare."""
        return self.scale * F.normalize(emb.float(), dim=1) @ F.normalize(self.weight, dim=1).T

    def margin_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CosFace cross-entropy: the margin is subtracted from the target class only."""
        logits = self.logits(emb)
        logits = logits - self.scale * self.margin * F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(logits, labels)
