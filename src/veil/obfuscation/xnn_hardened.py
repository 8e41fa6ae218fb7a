"""XNN-hardened (``xnnh``): a keyed map that mixes across tokens *and* channels, with optional one-time chaff
and a keyed non-linearity, so that a leaked (clean, obfuscated) pair teaches far less than XNN's.

Why XNN falls to leaked pairs: ``O = P X M`` applies one D x D matrix to every token, so one pair gives
N x D equations for D x D unknowns (16 pairs pin M on the 16 x 256 dlib tokens). Here the whole
flattened feature ``v = vec(X)`` (N*D values) is mixed at once, so a pair gives N*D equations for a map of
(N*D)^2 unknowns, and no per-token fingerprint (Gram blocks, norms) survives to match positions:

1. ``u = [v, c]``: ``chaff`` extra coordinates of *one-time* Gaussian noise per sample (a fresh CSPRNG draw,
   never derivable by anyone, the owner included), of RMS ``noise`` x the sample's own RMS. RecNet is
   trained on them and learns to ignore that subspace; a linear inverse fitted on leaked pairs has to
   average it out;
2. ``z = u Q1``: a keyed orthogonal map of size n = N*D + chaff, built as a three-stage block butterfly
   ``B1 Pi1 B2 Pi2 B3`` (``B``: block-diagonal with ``block`` x ``block`` Haar-orthogonal blocks, ``Pi``:
   keyed permutations of n). After three stages every output depends on every input; generating it costs
   three sets of small QR decompositions instead of one n x n QR (seconds instead of a minute at n = 4096);
3. optional keyed non-linearity (``curve`` > 0): ``z + curve * s * tanh(z / s)`` with ``s`` the sample's RMS
   (odd, strictly increasing, scale-equivariant), then a second keyed butterfly ``Q2``, so no linear map
   inverts the transform;
4. the n values are cut into ``tokens`` rows of n / tokens (RecNet's input shape).

Every keyed part derives from the owner key through :class:`~veil.obfuscation.base.KeySource` (one HKDF
label per stage and per kind); the design and its options are public (``public_info``), as Kerckhoffs
requires. The store holds only the outputs: no stage of Q1/Q2 is written anywhere (see
``tests/obfuscation/test_xnn_hardened.py``).

What this does *not* claim: the block structure is public, and an attack that exploits it (a bilinear
fit per output block once the permutations are guessed) is not built; the generic attacks of
``veil.attacks.leaked_pairs`` (ridge and learned inverses, the cloud-RecNet bridge) are.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from veil.errors import VeilError
from veil.obfuscation.base import KeySource, Obfuscation
from veil.obfuscation.randomness import Randomness, SystemRandomness, TorchRandomness

STAGES = 3


def _haar(gauss: torch.Tensor) -> torch.Tensor:
    """Haar-orthogonal blocks from standard-normal draws (batched QR with the sign fix)."""
    # numpy's batched QR: torch's is an order of magnitude slower on many small blocks with shared cores
    q, r = np.linalg.qr(gauss.double().numpy())
    signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    return torch.from_numpy(q * signs[..., None, :]).float()


class Butterfly(torch.nn.Module):
    """An orthogonal map of size n: ``STAGES`` block-diagonal stages with a permutation before each but the first.

    ``blocks``: (STAGES, n / b, b, b) orthogonal blocks; ``perms``: (STAGES, n) permutations (stage 0's is
    applied too, so the input order is also secret).
    """

    blocks: torch.Tensor  # buffers, typed for the checker
    perms: torch.Tensor

    def __init__(self, blocks: torch.Tensor, perms: torch.Tensor) -> None:
        super().__init__()
        if blocks.ndim != 4 or blocks.shape[-1] != blocks.shape[-2] or perms.shape[0] != blocks.shape[0]:
            raise VeilError(f"butterfly blocks must be (stages, n/b, b, b), got {tuple(blocks.shape)}")
        self.register_buffer("blocks", blocks.float())
        self.register_buffer("perms", perms.long())

    @property
    def size(self) -> int:
        return int(self.perms.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.blocks.shape[-1]
        for stage in range(self.blocks.shape[0]):
            x = x.index_select(-1, self.perms[stage])
            x = torch.einsum("zgi,gij->zgj", x.reshape(-1, x.shape[-1] // b, b), self.blocks[stage])
            x = x.reshape(-1, self.size)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b = self.blocks.shape[-1]
        for stage in reversed(range(self.blocks.shape[0])):
            y = torch.einsum("zgj,gij->zgi", y.reshape(-1, y.shape[-1] // b, b), self.blocks[stage])
            y = y.reshape(-1, self.size).index_select(-1, torch.argsort(self.perms[stage]))
        return y

    @classmethod
    def from_key(cls, key: KeySource, label: str, n: int, block: int) -> Butterfly:
        perms = torch.stack([torch.from_numpy(np.asarray(key.rng(f"{label}/perm{s}/{n}").permutation(n)))
                             for s in range(STAGES)])
        gauss = torch.from_numpy(key.rng(f"{label}/blocks/{n}/{block}").normal((STAGES, n // block, block, block)))
        return cls(_haar(gauss), perms)

    @classmethod
    def random(cls, n: int, block: int, generator: torch.Generator | None = None) -> Butterfly:
        perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(STAGES)])
        gauss = torch.randn(STAGES, n // block, block, block, generator=generator)
        return cls(_haar(gauss), perms)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).add(1e-12).sqrt()


class XNNHardened(Obfuscation):
    """Tokens (B, N, D) -> (B, tokens, (N*D + chaff) / tokens): chaff, keyed butterfly, optional keyed curve."""

    method = "xnnh"

    def __init__(self, in_tokens: int, in_dim: int, q1: Butterfly, q2: Butterfly | None = None, chaff: int = 0,
                 noise: float = 1.0, curve: float = 0.0, tokens: int = 1, randomness: Randomness | None = None,
                 fingerprint: str | None = None) -> None:
        super().__init__()
        n = in_tokens * in_dim + chaff
        if q1.size != n or (q2 is not None and q2.size != n):
            raise VeilError(f"xnnh maps of size {q1.size} do not fit {in_tokens} x {in_dim} tokens + {chaff} chaff")
        if n % tokens:
            raise VeilError(f"xnnh: {n} values do not cut into {tokens} tokens")
        if (curve > 0) != (q2 is not None):
            raise VeilError("xnnh: a curve needs a second map q2, and q2 only comes with a curve")
        self.in_shape = (in_tokens, in_dim)
        self.q1, self.q2 = q1, q2
        self.chaff, self.noise, self.curve, self.tokens = int(chaff), float(noise), float(curve), int(tokens)
        self.randomness = randomness or SystemRandomness()
        self._fingerprint = fingerprint

    @property
    def out_shape(self) -> tuple[int, int]:
        return self.tokens, self.q1.size // self.tokens

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != self.in_shape:
            raise VeilError(f"xnnh was made for tokens (batch, {self.in_shape[0]}, {self.in_shape[1]}), "
                            f"got {tuple(x.shape)}: was the key made for another extractor?")
        v = x.reshape(len(x), -1).float()
        if self.chaff:
            c = self.randomness.normal((len(x), self.chaff)).to(v.device)
            v = torch.cat([v, c * self.noise * _rms(v)], dim=1)
        z = self.q1(v)
        if self.q2 is not None:
            s = _rms(z)
            z = self.q2(z + self.curve * s * torch.tanh(z / s))
        return z.reshape(len(x), *self.out_shape).to(x.dtype)

    def public_info(self) -> dict:
        return {"method": self.method, "chaff": self.chaff, "noise": self.noise, "curve": self.curve,
                "tokens": self.tokens, "block": int(self.q1.blocks.shape[-1]), "stages": STAGES}

    @classmethod
    def from_key(cls, key: KeySource, in_tokens: int, in_dim: int, chaff: int = 0, noise: float = 1.0,
                 curve: float = 0.0, tokens: int = 1, block: int = 64,
                 randomness: Randomness | None = None) -> XNNHardened:
        n = _check(in_tokens, in_dim, chaff, noise, curve, tokens, block)
        q1 = Butterfly.from_key(key, "veil/xnnh/q1", n, block)
        q2 = Butterfly.from_key(key, "veil/xnnh/q2", n, block) if curve > 0 else None
        return cls(in_tokens, in_dim, q1, q2, chaff, noise, curve, tokens, randomness, key.fingerprint)

    @classmethod
    def random(cls, in_tokens: int, in_dim: int, chaff: int = 0, noise: float = 1.0, curve: float = 0.0,
               tokens: int = 1, block: int = 64, generator: torch.Generator | None = None,
               randomness: Randomness | None = None) -> XNNHardened:
        """Fresh public-random maps: an adversary's simulation (expectation attack), never a secret."""
        n = _check(in_tokens, in_dim, chaff, noise, curve, tokens, block)
        q1 = Butterfly.random(n, block, generator)
        q2 = Butterfly.random(n, block, generator) if curve > 0 else None
        return cls(in_tokens, in_dim, q1, q2, chaff, noise, curve, tokens,
                   randomness or TorchRandomness(generator))


def _check(in_tokens: int, in_dim: int, chaff: int, noise: float, curve: float, tokens: int, block: int) -> int:
    n = in_tokens * in_dim + chaff
    if chaff < 0 or noise < 0 or curve < 0 or tokens < 1 or block < 1:
        raise VeilError("xnnh options chaff, noise, curve must be >= 0 and tokens, block >= 1")
    if n % block:
        raise VeilError(f"xnnh: N*D + chaff = {n} is not a multiple of block {block}")
    if n % tokens:
        raise VeilError(f"xnnh: N*D + chaff = {n} does not cut into {tokens} tokens")
    if not math.isfinite(noise) or not math.isfinite(curve):
        raise VeilError("xnnh noise and curve must be finite")
    return n
