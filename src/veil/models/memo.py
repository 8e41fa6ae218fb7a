"""An ExtNet that remembers its outputs within one process: the owner's features computed once per run.

Why: a run extracts the same private images several times (the Vanilla+PE store, the XNN store, the
evaluation of each chain, the wrong-key row, the attacks' probes). With a pre-trained CNN at 150 px
that extraction is most of a CPU run's time, while ObfNet, which differs between them, is cheap. The
memo lives in memory only: owner features never reach a shared cache on disk.
"""

from __future__ import annotations

import hashlib

import torch

from veil.models.extractor import Extractor


class MemoExtNet(Extractor):
    """Wraps an ExtNet; the same image (by content) is run through it once. Same interface and digest."""

    def __init__(self, ext: Extractor) -> None:
        super().__init__()
        self.inner = ext
        self.cfg = ext.cfg
        self._memo: dict[bytes, torch.Tensor] = {}

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.inner.token_shape

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.normalize(images)

    def state_dict(self, *args, **kwargs):  # the wrapped ExtNet's weights: digests must not change
        return self.inner.state_dict(*args, **kwargs)

    def train(self, mode: bool = True) -> MemoExtNet:  # noqa: ARG002 - ExtNet is frozen
        self.inner.train(False)
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        host = images.detach().cpu().contiguous()
        keys = [hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() for img in host]
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        if todo:
            out = self.inner(images[todo]).cpu()
            for j, i in enumerate(todo):
                self._memo[keys[i]] = out[j].clone()
        return torch.stack([self._memo[k] for k in keys]).to(images.device)
