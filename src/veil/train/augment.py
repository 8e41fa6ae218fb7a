"""Cheap batch augmentations on uint8 image tensors (flip, padded random crop), done on-device."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_and_crop(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip and a random ``pad``-pixel translation (reflect padding), per image."""
    b, _, h, w = images.shape
    x = images.float()
    flip = torch.rand(b, generator=generator) < 0.5
    x[flip] = x[flip].flip(-1)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).to(x.device)
        cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).to(x.device)
        idx = torch.arange(b, device=x.device).view(b, 1, 1)
        x = x.permute(0, 2, 3, 1)[idx, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    return x.round().clamp(0, 255).to(torch.uint8)
