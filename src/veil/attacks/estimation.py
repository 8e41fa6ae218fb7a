"""Linear-algebra steps the parameter-recovery attacks share: assignment, Procrustes, whitening.

Convention (as in ``veil.obfuscation.xnn``): ``O[:, j] = X[:, perm[j]] @ M`` with row-vector tokens.
An estimated permutation ``p`` has the same meaning, so ``p == perm`` is exact recovery.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def assign(cost: torch.Tensor) -> torch.Tensor:
    """Permutation ``p`` minimising ``sum_j cost[j, p[j]]`` (Hungarian algorithm, exact)."""
    rows, cols = linear_sum_assignment(cost.detach().double().cpu().numpy())
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)


def procrustes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthogonal ``R`` minimising ``||a R - b||_F`` (rows are paired vectors). Needs no full rank."""
    u, _, vh = torch.linalg.svd(a.double().T @ b.double())
    return u @ vh


def least_squares(a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Any ``M`` minimising ``||a M - b||_F``; a tiny ridge picks the small-norm one when under-determined."""
    a, b = a.double(), b.double()
    gram = a.T @ a
    scale = float(torch.diagonal(gram).mean()) or 1.0
    return torch.linalg.solve(gram + ridge * scale * torch.eye(gram.shape[0], dtype=gram.dtype), a.T @ b)


def apply_inverse(obfuscated: torch.Tensor, perm: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Undo ``O = X[:, perm] M`` with estimates: right-multiply by pinv(M), then put tokens back in place."""
    inv = torch.linalg.pinv(matrix.double()).to(torch.float32)
    x = obfuscated.float() @ inv
    return x.index_select(1, torch.argsort(perm))


def inv_sqrt(cov: torch.Tensor, floor: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``cov^(-1/2)`` and ``cov^(1/2)``, eigenvalues clipped at ``floor * max`` so near-null directions stay finite."""
    vals, vecs = torch.linalg.eigh(cov.double())
    vals = vals.clamp_min(floor * float(vals.max()))
    return (vecs * vals.rsqrt()) @ vecs.T, (vecs * vals.sqrt()) @ vecs.T


def row_moments(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of all token rows pooled over positions (invariant to the permutation)."""
    rows = tokens.double().reshape(-1, tokens.shape[-1])
    mean = rows.mean(0)
    centred = rows - mean
    return mean, centred.T @ centred / max(1, len(rows) - 1)
