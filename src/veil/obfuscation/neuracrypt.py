"""NeuraCrypt (Yala et al., 2021), the XNN paper's random-encoder baseline, behind Veil's interface.

As in yala/NeuraCrypt: a strided convolution cuts the image into patches (kernel = stride = patch),
a secret random position embedding is added per patch, ``depth`` x [1x1 convolution, ReLU] mix each
patch non-linearly, a final linear layer maps to ``dim``, and the patch order is shuffled
*independently for every sample*. The encoder's weights are the owner's key; the shuffles are
one-time values from a CSPRNG. NeuraCrypt's BatchNorm layers are left out: with fixed statistics
they are affine maps that the next convolution absorbs, and batch statistics would make one image's
encoding depend on its batch-mates.

It replaces ExtNet (``level = "encoder"``: images -> tokens); the cloud trains the same
permutation-invariant RecNet on its output, as the paper did.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from veil.errors import VeilError
from veil.obfuscation.base import KeySource, Obfuscation
from veil.obfuscation.randomness import Randomness, SystemRandomness, permutations


def weight_shapes(img_size: int, patch: int, dim: int, depth: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the encoder's random tensors (what a key derives)."""
    if img_size % patch:
        raise VeilError(f"NeuraCrypt patch {patch} does not divide image size {img_size}")
    side = img_size // patch
    shapes: dict[str, tuple[int, ...]] = {"patch": (dim, 3, patch, patch), "pos": (1, dim, side, side)}
    for i in range(depth):
        shapes[f"mix{i}"] = (dim, dim)
    shapes["out"] = (dim, dim)
    return shapes


def scale_gaussians(gauss: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """He-style scaling of standard normal draws, so activations keep their size through the ReLUs."""
    out = {}
    for name, g in gauss.items():
        if name == "pos":
            out[name] = g.float()
        else:
            fan_in = math.prod(g.shape[1:])
            out[name] = g.float() * math.sqrt((2.0 if name != "out" else 1.0) / fan_in)
    return out


class NeuraCrypt(Obfuscation):
    """Secret random conv encoder + position embedding + per-sample patch shuffle: images -> (B, N, dim)."""

    method = "neuracrypt"
    level = "encoder"
    w_patch: torch.Tensor  # buffers (w_<name>), typed for the checker
    w_pos: torch.Tensor
    w_out: torch.Tensor

    def __init__(self, weights: dict[str, torch.Tensor], patch: int, randomness: Randomness | None = None,
                 fingerprint: str | None = None) -> None:
        super().__init__()
        if "patch" not in weights or "pos" not in weights or "out" not in weights:
            raise VeilError("NeuraCrypt weights need 'patch', 'pos' and 'out' tensors")
        self.patch = patch
        self.depth = sum(1 for n in weights if n.startswith("mix"))
        for name, w in weights.items():
            self.register_buffer(f"w_{name}", w.float())
        self.rng = randomness if randomness is not None else SystemRandomness()
        self._fingerprint = fingerprint

    @property
    def dim(self) -> int:
        return int(self.w_patch.shape[0])

    @property
    def img_size(self) -> int:
        return int(self.w_pos.shape[-1]) * self.patch

    @property
    def tokens(self) -> int:
        return int(self.w_pos.shape[-1] * self.w_pos.shape[-2])

    @torch.no_grad()
    def encode_ordered(self, images: torch.Tensor) -> torch.Tensor:
        """The encoding before the shuffle (B, N, dim), for tests and analysis."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != self.img_size \
                or images.shape[-2] != self.img_size:
            raise VeilError(f"NeuraCrypt was made for images (batch, 3, {self.img_size}, {self.img_size}), "
                            f"got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = F.conv2d(x * 2 - 1, self.w_patch, stride=self.patch) + self.w_pos
        x = x.flatten(2).transpose(1, 2)  # (B, N, dim)
        for i in range(self.depth):
            x = F.relu(x @ getattr(self, f"w_mix{i}").T)
        return x @ self.w_out.T

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.encode_ordered(images)
        order = permutations(self.rng, len(x), x.shape[1]).to(x.device)
        return torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))

    def public_info(self) -> dict:
        return {"method": self.method, "patch": self.patch, "depth": self.depth, "dim": self.dim,
                "img_size": self.img_size}

    @classmethod
    def from_key(cls, key: KeySource, img_size: int, patch: int = 16, dim: int = 256, depth: int = 2) -> NeuraCrypt:
        """The owner's encoder: every weight tensor from its own HKDF label (the shape is bound in)."""
        gauss = {}
        for name, shape in weight_shapes(img_size, patch, dim, depth).items():
            label = f"veil/neuracrypt/{name}/{'x'.join(map(str, shape))}"
            gauss[name] = torch.from_numpy(key.rng(label).normal(shape)).float()
        return cls(scale_gaussians(gauss), patch, fingerprint=key.fingerprint)

    @classmethod
    def random(cls, img_size: int, patch: int = 16, dim: int = 256, depth: int = 2,
               generator: torch.Generator | None = None, randomness: Randomness | None = None) -> NeuraCrypt:
        """Fresh public-random encoder weights: an attacker's simulation, not a secret."""
        gauss = {n: torch.randn(s, generator=generator) for n, s in weight_shapes(img_size, patch, dim, depth).items()}
        return cls(scale_gaussians(gauss), patch, randomness)
