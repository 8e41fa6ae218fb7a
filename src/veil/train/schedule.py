"""Learning-rate schedule shared by every trainer: linear warm-up, then cosine decay to ``floor``."""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  floor: float = 0.02) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplier on each group's base lr: ramps 0->1 over ``warmup_steps``, then cosine to ``floor``."""
    total_steps = max(1, total_steps)
    warmup_steps = min(warmup_steps, total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
