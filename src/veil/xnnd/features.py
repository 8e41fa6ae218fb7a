"""Run FG over many images in batches: the features a client would send (and an eavesdropper would read)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from veil.xnnd.generator import FeatureGenerator


@torch.no_grad()
def generate(fg: FeatureGenerator, images: torch.Tensor, batch_size: int = 256, flip: bool = False,
             clean: bool = False, device: torch.device | str = "cpu") -> torch.Tensor:
    """FG features (n, N, D) of uint8 images (mirrored with ``flip``; baseline LN features with ``clean``)."""
    fg = fg.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        x = x.flip(-1) if flip else x
        out.append((fg.clean(x) if clean else fg(x)).cpu())
    if not out:
        n, d = fg.token_shape
        return torch.empty(0, n, d)
    return torch.cat(out)


def query_oracle(fg: FeatureGenerator, batch_size: int = 256,
                 device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """Black-box access to FG: images in, features out, weights hidden behind a closure (section 5.3)."""

    def query(images: torch.Tensor) -> torch.Tensor:
        return generate(fg, images, batch_size, device=device)

    return query
