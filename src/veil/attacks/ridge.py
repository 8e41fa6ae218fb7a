"""Ridge regression with a held-out penalty: the one linear fit every pair-based attack uses.

Why one module: the leaked-pairs attack (its generic inverse and XNN's under-determined per-token map) and
XNN-d's known-plaintext de-noiser each fit ``y ~ x W`` from a few leaked pairs, where the penalty decides
whether the figure measures the transform or the fit. They share the solve and the rule that the penalty
is chosen on data not used to fit (leave-one-out in closed form, or held-out groups of rows), never on the
probes that are scored.

- :func:`solve`: primal ridge ``(x^T x + lam * scale * I)^-1 x^T y``, ``scale`` = mean diagonal of
  ``x^T x`` (so ``lam`` is relative), optionally with an unpenalised intercept column;
- :func:`choose_penalty`: the grid value with the smallest held-out error (the first one on ties);
- :func:`kernel_ridge`: dual form (k x k kernel) with the closed-form leave-one-out error, for when the
  feature dimension exceeds the number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

RIDGE_GRID = tuple(10.0 ** e for e in range(-6, 3))  # relative to the mean eigenvalue / diagonal


def with_intercept(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (float64) with a trailing 1 (the design matrix of an affine fit)."""
    x = x.double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def solve(x: torch.Tensor, y: torch.Tensor, lam: float, relative: bool = True,
          intercept: bool = False) -> torch.Tensor:
    """``W`` minimising ``||x W - y||^2 + lam' ||W||^2`` (float64).

    ``relative``: ``lam' = lam * mean(diag(x^T x))``, else ``lam' = lam``. ``intercept``: ``x`` already ends
    in a column of ones (see :func:`with_intercept`) whose weight is not penalised.
    """
    a, b = x.double(), y.double()
    gram = a.T @ a
    scale = (float(torch.diagonal(gram).mean()) or 1.0) if relative else 1.0
    reg = lam * scale * torch.eye(gram.shape[0], dtype=gram.dtype)
    if intercept:
        reg[-1, -1] = 0.0
    return torch.linalg.solve(gram + reg, a.T @ b)


def choose_penalty(grid: Sequence[float], error: Callable[[float], float]) -> tuple[float, float]:
    """(penalty, its held-out error): the grid value whose ``error(lam)`` is smallest, the first on ties."""
    if not grid:
        raise ValueError("the penalty grid is empty")
    best, best_err = grid[0], float("inf")
    for lam in grid:
        err = error(lam)
        if err < best_err:
            best, best_err = lam, err
    return best, best_err


def kernel_ridge(feats: torch.Tensor, targets: torch.Tensor,
                 grid: Sequence[float] = RIDGE_GRID) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """Linear ridge map feats -> targets (with intercepts), penalty by closed-form leave-one-out error.

    Dual form (k x k kernel), so it costs nothing when the feature dimension exceeds the pairs. Returns
    the predictor and the chosen penalty (relative to the kernel's mean eigenvalue).
    """
    x, y = feats.double(), targets.double()
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    vals, vecs = torch.linalg.eigh(xc @ xc.T)
    vals = vals.clamp_min(0)
    scale = float(vals.mean()) or 1.0
    proj = vecs.T @ yc

    def loo_error(lam: float) -> float:
        shrink = vals / (vals + lam * scale)
        fitted = vecs @ (shrink[:, None] * proj)
        hdiag = (vecs.pow(2) * shrink).sum(1)
        loo = (yc - fitted) / (1 - hdiag).clamp_min(1e-9)[:, None]
        return float(loo.pow(2).sum())

    best, _ = choose_penalty(grid, loo_error)
    alpha = vecs @ ((1.0 / (vals + best * scale))[:, None] * proj)  # (K + lam I)^-1 yc

    def predict(new: torch.Tensor) -> torch.Tensor:
        return ((new.double() - mx) @ xc.T @ alpha + my).float()

    return predict, best


__all__ = ["RIDGE_GRID", "choose_penalty", "kernel_ridge", "solve", "with_intercept"]
