"""XNN's ObfNet: a secret permutation P of the N tokens and a secret D x D mixing matrix M, O = P X M.

This module holds the transform only. Its parameters come either from the owner's key
(``veil.obfuscation.keyed``, owner side) or from a public random generator (``XNN.random``, used by
the expectation attack, which redraws them every batch). It never imports the key module.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from veil.errors import VeilError
from veil.obfuscation.base import KeySource, Obfuscation

MATRIX_KINDS = ("orthogonal", "gaussian")


def gaussian_to_matrix(gauss: torch.Tensor, kind: str) -> torch.Tensor:
    """Turn a standard-normal D x D draw into the mixing matrix of ``kind``.

    ``gaussian``: randn / sqrt(D) (the paper's choice). ``orthogonal``: the Q of a QR decomposition
    with the sign fix that makes it Haar-distributed (norm-preserving, so RecNet's inputs keep scale).
    """
    d = gauss.shape[0]
    if kind == "gaussian":
        return gauss / math.sqrt(d)
    if kind == "orthogonal":
        q, r = torch.linalg.qr(gauss)
        return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    raise VeilError(f"matrix kind must be one of {MATRIX_KINDS}, got {kind!r}")


class XNN(Obfuscation):
    """O = X[:, P, :] @ M, vectorised over the batch (one gather and one matmul)."""

    method = "xnn"
    perm: torch.Tensor  # buffers, typed for the checker
    matrix: torch.Tensor

    def __init__(self, permutation: torch.Tensor | np.ndarray, matrix: torch.Tensor | np.ndarray,
                 kind: str = "orthogonal", fingerprint: str | None = None) -> None:
        super().__init__()
        perm = torch.as_tensor(np.asarray(permutation), dtype=torch.long)
        mat = torch.as_tensor(np.asarray(matrix), dtype=torch.float32)
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise VeilError("XNN permutation is not a permutation")
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise VeilError(f"XNN matrix must be square, got {tuple(mat.shape)}")
        self.register_buffer("perm", perm)
        self.register_buffer("matrix", mat)
        self.kind = kind
        self._fingerprint = fingerprint

    @property
    def tokens(self) -> int:
        return len(self.perm)

    @property
    def dim(self) -> int:
        return self.matrix.shape[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[1:] != (self.tokens, self.dim):
            raise VeilError(f"XNN was made for tokens (batch, {self.tokens}, {self.dim}), "
                            f"got {tuple(tokens.shape)}: was the key made for another extractor?")
        return tokens.index_select(1, self.perm) @ self.matrix.to(tokens.dtype)

    def invert(self, obfuscated: torch.Tensor) -> torch.Tensor:
        """X from O (owner side, or an attacker's estimate of P and M)."""
        x = obfuscated @ torch.linalg.inv(self.matrix.double()).to(obfuscated.dtype)
        return x.index_select(1, torch.argsort(self.perm))

    def public_info(self) -> dict:
        return {"method": self.method, "matrix": self.kind}

    @classmethod
    def from_key(cls, key: KeySource, tokens: int, dim: int, kind: str = "orthogonal") -> XNN:
        """The owner's ObfNet for an ExtNet with ``tokens`` x ``dim`` output (one HKDF label per parameter)."""
        perm = key.rng(f"veil/xnn/permutation/{tokens}").permutation(tokens)
        gauss = torch.from_numpy(key.rng(f"veil/xnn/matrix/{dim}").normal((dim, dim))).float()
        return cls(perm, gaussian_to_matrix(gauss, kind), kind, fingerprint=key.fingerprint)

    @classmethod
    def random(cls, tokens: int, dim: int, kind: str = "orthogonal",
               generator: torch.Generator | None = None) -> XNN:
        """Fresh public-random parameters: the adversary's expectation obfuscation, not a secret."""
        perm = torch.randperm(tokens, generator=generator)
        gauss = torch.randn(dim, dim, generator=generator)
        return cls(perm, gaussian_to_matrix(gauss, kind), kind)
