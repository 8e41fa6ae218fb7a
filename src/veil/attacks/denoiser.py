"""Known-plaintext against XNN-d's noise: an affine de-noiser fitted on k leaked (clean, noised) token pairs.

The adversary holds k of the owner's training images twice: their clean tokens (LayerNorm(ExtNet(x)), public
ExtNet) and the noised features the client sent. It fits one affine map noised -> clean token, shared by all
positions, with the ridge penalty chosen on held-out pairs, applies it to the owner's noised test features and
identifies them with its clean-token identifier. ``veil.xnnd.sweep`` runs it per k for Table 4; here it is an
attack like the others, so it holds what an adversary holds and never the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from veil.attacks import params, ridge
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.leakage import Target, identity_leakage
from veil.attacks.recnet_fit import recnet_embedder

RIDGE_PENALTIES = tuple(10.0 ** p for p in range(-3, 5))  # the held-out search's grid


@dataclass
class RidgeFit:
    weight: torch.Tensor | None  # (D + 1, D): [noised, 1] @ weight = clean; None when not determined
    lam: float | None
    heldout_residual: float | None
    ols_determined: bool
    note: str = ""


def fit_denoiser(clean: torch.Tensor, noised_: torch.Tensor, seed: int = 0, holdout: float = 0.25,
                 lambdas: Sequence[float] = RIDGE_PENALTIES) -> RidgeFit:
    """Affine map noised -> clean token, shared by all positions, ridge penalty chosen on held-out pairs.

    Pairs, not token rows, are held out (rows of one image are not independent). Fewer than 4 pairs
    leave nothing to hold out: not determined.
    """
    k, n_tok, dim = clean.shape
    ols = n_tok * k >= dim + 1
    if k < 4:
        return RidgeFit(None, None, None, ols, f"{k} pairs: too few to fit and hold out (need >= 4)")
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(seed))
    n_out = max(1, int(round(holdout * k)))
    out_idx, in_idx = perm[:n_out], perm[n_out:]

    def fit(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:  # the offset is not penalised
        return ridge.solve(ridge.with_intercept(x.reshape(-1, dim)), y.reshape(-1, dim), lam, relative=False,
                           intercept=True)

    def heldout_residual(lam: float) -> float:
        pred = ridge.with_intercept(noised_[out_idx].reshape(-1, dim)) @ fit(noised_[in_idx], clean[in_idx], lam)
        target = clean[out_idx].reshape(-1, dim).double()
        return float((pred - target).norm() / target.norm().clamp_min(1e-12))

    lam, residual = ridge.choose_penalty(tuple(lambdas), heldout_residual)
    return RidgeFit(fit(noised_, clean, lam).float(), lam, residual, ols)


def apply_denoiser(weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    n, n_tok, dim = features.shape
    x = features.reshape(-1, dim).float()
    return (torch.cat([x, torch.ones(len(x), 1)], 1) @ weight).reshape(n, n_tok, dim)


class DenoiserAttack(Attack):
    """k leaked (clean, noised) pairs -> ridge de-noiser -> the owner's test features de-noised -> identified."""

    name = "denoiser"
    title = "known-plaintext de-noiser (XNN-d)"
    label = "known-plaintext de-noiser"
    holdings = ("k leaked (clean tokens, noised features) pairs of owner training images (pairs)",
                "the owner's noised test features and the gallery/probe protocol (target)",
                "an identifier for clean tokens, e.g. a RecNet trained on public faces (recnet)")

    def __init__(self, seed: int = 0, holdout: float = 0.25) -> None:
        self.seed = params.non_negative_int("seed", seed)
        if not 0.0 < holdout < 1.0:
            raise params.AttackParameterError("holdout", f"holdout must be in (0, 1), got {holdout!r}")
        self.holdout = float(holdout)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        """The identification rate after de-noising; a fit with too few pairs is reported as not determined."""
        (clean, noised_), target, recnet = view.need("pairs", "target", "recnet")
        fit = fit_denoiser(clean, noised_, self.seed, self.holdout)
        info = {"k": len(clean), "ols_determined": fit.ols_determined, "lambda": fit.lam,
                "heldout_residual": fit.heldout_residual}
        if fit.weight is None:
            return AttackResult(self.name, None, self.holdings, command, {**info, "determined": False,
                                                                           "note": fit.note}, fit)
        inverted = Target(apply_denoiser(fit.weight, target.features), target.labels, target.gallery, target.probe)
        leak = identity_leakage(inverted, recnet_embedder(recnet))
        return self.result(leak, command, fit, determined=True, **info)
