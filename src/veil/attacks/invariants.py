"""What a transform keeps by construction, as statistics an attack can compute on either side of it.

Each function reads one invariant (see the audit in ``docs/attacks.md``):

- an orthogonal map of the flattened feature (XNN with an orthogonal M, XNN-H without its curve) keeps every
  inner product: ``<Q v, Q x> = <v, x>``. With k leaked pairs ``(x_i, Q x_i)`` each obfuscated probe ``o``
  therefore gives ``s = (<v, x_1>, ..., <v, x_k>)`` exactly, with no estimate of ``Q``:
  :func:`inner_product_profiles`. The adversary's own clean photos give the same profile of each gallery
  face, so probes and gallery meet in one k-dimensional space (:func:`whitened_profiles`), or ``s`` is
  turned back into clean tokens by the Gaussian posterior mean under a prior fitted on the adversary's
  clean tokens (:func:`posterior_mean`), which its public identifier then embeds;
- a map ``X -> P X M`` (rows permuted, every row through one orthogonal ``M``: XNN) keeps the singular
  values of each sample's token matrix: :func:`token_spectrum`;
- a per-sample permutation of tokens (NeuraCrypt's patch shuffle; XNN's ``P`` alone) keeps the multiset
  of tokens, so any symmetric function of it: :func:`token_multiset`.
"""

from __future__ import annotations

import torch
from sklearn.covariance import LedoitWolf

from veil.attacks.estimation import inv_sqrt
from veil.attacks.leakage import LeakageResult
from veil.metrics import top1


def flat(x: torch.Tensor) -> torch.Tensor:
    """Each sample as one float64 row."""
    return x.reshape(len(x), -1).double()


def inner_product_profiles(anchors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(n, k) inner products of each row with each of the k anchors (both flattened; shapes must agree)."""
    a, r = flat(anchors), flat(rows)
    if a.shape[1] != r.shape[1]:
        raise ValueError(f"anchors have {a.shape[1]} values a row, rows {r.shape[1]}")
    return r @ a.T


def prior_pool(gallery: torch.Tensor, clean_pairs: torch.Tensor) -> torch.Tensor:
    """The adversary's clean rows a prior is fitted on: its own gallery photos and the leaked clean tokens."""
    return torch.cat([flat(gallery), flat(clean_pairs)])


def whitened_profiles(profiles: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Profiles centred on the reference profiles' mean and whitened by their (Ledoit-Wolf) covariance.

    Cosine between whitened profiles compares faces in the k directions the pairs expose, each direction
    weighted by how much faces vary along it (a Mahalanobis-style match), whatever the scale of the tokens.
    Ledoit-Wolf shrinkage keeps the whitening finite when k approaches the number of reference rows (the
    sample covariance is then singular and whitening would amplify its null directions).
    """
    ref = reference.double()
    cov = torch.from_numpy(LedoitWolf().fit(ref.numpy()).covariance_)
    w, _ = inv_sqrt(cov, 1e-12)
    return (profiles.double() - ref.mean(0)) @ w


def posterior_mean(profiles: torch.Tensor, clean_pairs: torch.Tensor, pool: torch.Tensor,
                   jitter: float = 1e-6) -> torch.Tensor:
    """E[v | <v, x_i> = s_i] for v ~ N(mean, cov) of ``pool``: ``mean + cov X^T (X cov X^T)^-1 (s - X mean)``.

    ``clean_pairs`` are the x_i (k, ...), ``profiles`` (n, k) the s of each probe; the result is (n, values).
    The covariance is used only through products with ``X^T`` (never formed: values x values is 16M floats
    for dlib's tokens). ``jitter`` (relative to the mean diagonal) keeps the k x k system solvable when two
    leaked vectors are nearly parallel.
    """
    x = flat(clean_pairs)
    mean = pool.mean(0)
    centred = pool - mean
    cov_xt = centred.T @ (centred @ x.T) / max(1, len(pool) - 1)  # (values, k)
    system = x @ cov_xt
    system = system + jitter * float(system.diagonal().mean()) * torch.eye(len(system), dtype=system.dtype)
    coef = torch.linalg.solve(system, (profiles - x @ mean).T)  # (k, n)
    return mean + (cov_xt @ coef).T


def token_spectrum(tokens: torch.Tensor) -> torch.Tensor:
    """Singular values of each sample's (N, D) token matrix, largest first: unchanged by ``X -> P X M``."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (n, N, D), got {tuple(tokens.shape)}")
    return torch.linalg.svdvals(tokens.double())


def token_multiset(tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric statistics of each sample's tokens (mean and per-channel spread): unchanged by any reordering
    of its tokens. (n, 2D)."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (n, N, D), got {tuple(tokens.shape)}")
    t = tokens.double()
    return torch.cat([t.mean(1), t.std(1, unbiased=False)], dim=1)


def match_statistics(gallery_stats: torch.Tensor, gallery_labels: torch.Tensor, probe_stats: torch.Tensor,
                     probe_labels: torch.Tensor) -> LeakageResult:
    """Top-1 of probes named by the nearest gallery statistic (cosine after standardising each statistic by the
    gallery's mean and spread, so no one coordinate dominates by scale)."""
    mean, std = gallery_stats.mean(0), gallery_stats.std(0).clamp_min(1e-12)
    rate, hits = top1((gallery_stats - mean) / std, gallery_labels, (probe_stats - mean) / std, probe_labels)
    return LeakageResult(rate, 1.0 / len(gallery_labels), len(gallery_labels), hits)


__all__ = ["flat", "inner_product_profiles", "match_statistics", "posterior_mean", "prior_pool", "token_multiset",
           "token_spectrum", "whitened_profiles"]
