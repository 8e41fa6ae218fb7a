"""InstaHide (Huang et al., 2020), the XNN paper's pixel-space baseline, behind Veil's obfuscation interface.

Each private image is mixed with ``k - 1`` others: ``(k - 1) // 2`` more private images and the rest
from a public pool (the paper's cross-dataset variant), with coefficients ``|N(0, 1)|`` normalised to
sum to 1 and redrawn until none exceeds ``cap`` (0.65, "so no single image dominates"). Every pixel of
the mixture, taken in [-1, 1], then gets its own random sign: a one-time key per instance. The label
is the coefficient-weighted sum of the *private* images' one-hot labels (public images carry none).

Unlike XNN this acts on pixels (``level = "image"``): the owner mixes, then runs the public ExtNet on
the mixture, and the cloud trains RecNet on those tokens. The owner's randomness comes from
:class:`~veil.obfuscation.randomness.SystemRandomness` by default (a CSPRNG); a seeded
:class:`~veil.obfuscation.randomness.TorchRandomness` is for attackers' simulations and tests.
"""

from __future__ import annotations

import torch

from veil.errors import VeilError
from veil.obfuscation.base import Obfuscation
from veil.obfuscation.randomness import Randomness, SystemRandomness


def _as_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images -> float in [-1, 1]."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return x * 2 - 1


def capped_coefficients(rng: Randomness, rows: int, k: int, cap: float) -> torch.Tensor:
    """(rows, k) mixing coefficients: |N(0,1)| normalised to sum 1, each row redrawn until its max <= cap."""
    if k == 1:
        return torch.ones(rows, 1)
    out = torch.empty(rows, k)
    todo = torch.arange(rows)
    while len(todo):
        draw = rng.normal((len(todo), k)).abs() + 1e-12
        draw = draw / draw.sum(dim=1, keepdim=True)
        ok = draw.max(dim=1).values <= cap
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


class InstaHide(Obfuscation):
    """Mix each image with ``k - 1`` others (private and public), then flip every pixel's sign at random."""

    method = "instahide"
    level = "image"
    mixes_labels = True

    def __init__(self, k: int, public: torch.Tensor, cap: float = 0.65, randomness: Randomness | None = None) -> None:
        super().__init__()
        if k < 1:
            raise VeilError(f"InstaHide k must be >= 1, got {k}")
        if not 1.0 / k <= cap <= 1.0:
            raise VeilError(f"InstaHide cap must be in [1/k, 1] = [{1 / k:.3f}, 1], got {cap}")
        self.private_partners = (k - 1) // 2
        self.public_partners = k - 1 - self.private_partners
        if self.public_partners and (public.ndim != 4 or len(public) == 0):
            raise VeilError(f"InstaHide needs a non-empty public image pool (n, 3, H, W), got {tuple(public.shape)}")
        self.k = k
        self.cap = cap
        self.public = public
        self.rng = randomness if randomness is not None else SystemRandomness()

    def mix(self, images: torch.Tensor, targets: torch.Tensor | None = None,
            private: torch.Tensor | None = None,
            private_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode ``images`` (B, 3, H, W); returns float images in [0, 1] and the mixed soft targets.

        ``private`` (with ``private_targets``) is the pool other private images are drawn from; by
        default the batch itself. ``targets`` are (B, C) soft/one-hot labels, or None at test time.
        """
        if images.ndim != 4:
            raise VeilError(f"InstaHide expects images (batch, 3, H, W), got {tuple(images.shape)}")
        if self.public_partners and tuple(self.public.shape[1:]) != tuple(images.shape[1:]):
            raise VeilError(f"public pool images are {tuple(self.public.shape[1:])}, "
                            f"private images {tuple(images.shape[1:])}")
        if private is None:
            private, private_targets = images, targets
        b = len(images)
        lam = capped_coefficients(self.rng, b, self.k, self.cap)
        mixed = lam[:, 0].view(b, 1, 1, 1) * _as_unit(images)
        soft = lam[:, :1] * targets.float() if targets is not None else None
        col = 1
        for _ in range(self.private_partners):
            idx = self.rng.randint(len(private), (b,))
            mixed = mixed + lam[:, col].view(b, 1, 1, 1) * _as_unit(private[idx])
            if soft is not None:
                if private_targets is None:
                    raise VeilError("private_targets are needed with targets and a private pool")
                soft = soft + lam[:, col:col + 1] * private_targets[idx].float()
            col += 1
        for _ in range(self.public_partners):
            idx = self.rng.randint(len(self.public), (b,))
            mixed = mixed + lam[:, col].view(b, 1, 1, 1) * _as_unit(self.public[idx])
            col += 1
        mixed = mixed * self.rng.signs(tuple(mixed.shape))
        return (mixed + 1) / 2, soft

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mix(images)[0]

    def public_info(self) -> dict:
        return {"method": self.method, "k": self.k, "cap": self.cap}
