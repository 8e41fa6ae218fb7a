"""Distribution alignment, no pairs: recover XNN's parameters from statistics alone.

The cloud holds the obfuscated store; anyone holds public ExtNet tokens of their own face images.
Second moments fix ``M`` up to a rotation: with row tokens centred and whitened by their own pooled
covariance (pooling over positions cancels the permutation), ``o~ = x~ R`` with ``R`` orthogonal,
whatever invertible ``M`` the owner drew. Inner products of whitened vectors are therefore invariant,
so per-position statistics match positions: the Gram matrix of whitened per-position means and each
position's whitened energy, matched by the Hungarian algorithm and refined as a graph matching.
``R`` itself is what second moments cannot fix; it is estimated by orthogonal Procrustes on anchors
the adversary can pair: the matched per-position means, and each position's top principal axes
(signs fixed by their skewness, a third moment). The adversary then inverts the owner's test
features and identifies them.

``whitened_rate`` needs none of this: cosine matching of whitened pooled tokens ignores ``R`` and
the order of tokens, so it measures what leaks with no estimate at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.estimation import assign, inv_sqrt, procrustes, row_moments
from veil.attacks.identifiers import IDENTIFIERS, build_identifier
from veil.attacks.leakage import LeakageResult, Target, identity_leakage, pooled_embedder
from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.metrics import Rate


@dataclass
class AlignmentResult:
    """Leakage after inverting with the estimated parameters, and with whitening alone."""

    rate: Rate
    chance: float
    leakage: LeakageResult
    whitened: LeakageResult
    permutation: torch.Tensor
    matrix: torch.Tensor
    identifier: str
    seconds: float
    config: dict = field(default_factory=dict)

    @property
    def whitened_rate(self) -> Rate:
        return self.whitened.rate


@dataclass
class _Whitened:
    mean: torch.Tensor
    w: torch.Tensor  # cov^(-1/2)
    w_inv: torch.Tensor  # cov^(1/2)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens.double() - self.mean) @ self.w


def _whitener(tokens: torch.Tensor, floor: float) -> _Whitened:
    mean, cov = row_moments(tokens)
    w, w_inv = inv_sqrt(cov, floor)
    return _Whitened(mean, w, w_inv)


def _principal_axes(white: torch.Tensor, axes: int) -> torch.Tensor:
    """Top ``axes`` principal axes of each position (N, axes, D), scaled by sqrt(eigenvalue), signs by skewness."""
    out = []
    for j in range(white.shape[1]):
        rows = white[:, j, :]
        centred = rows - rows.mean(0)
        vals, vecs = torch.linalg.eigh(centred.T @ centred / max(1, len(rows) - 1))
        vals, vecs = vals.flip(0)[:axes], vecs.flip(1)[:, :axes]
        skew = ((centred @ vecs) ** 3).mean(0)
        vecs = vecs * torch.where(skew < 0, -1.0, 1.0).to(vecs.dtype)
        out.append((vecs * vals.clamp_min(0).sqrt()).T)
    return torch.stack(out)


class AlignmentAttack(Attack):
    """Match the obfuscated store's statistics to public ExtNet statistics, invert, identify."""

    name = "alignment"
    title = "distribution alignment"
    holdings = ("the obfuscated store (store_features)", "unlabelled public ExtNet tokens (public_tokens)",
                "the owner's obfuscated test features (target)",
                "optionally labelled auxiliary tokens for the recnet identifier")

    def __init__(self, axes: int = 4, refine_rounds: int = 10, identifier: str = "pooled",
                 recnet: AttackRecNetConfig | None = None, floor: float = 1e-4,
                 device: torch.device | str = "cpu") -> None:
        self.axes = params.non_negative_int("axes", axes)
        self.refine_rounds = params.non_negative_int("refine_rounds", refine_rounds)
        self.identifier = params.choice("identifier", identifier, IDENTIFIERS)
        self.recnet_cfg = params.recnet_config(recnet, AttackRecNetConfig())
        self.floor = params.positive_float("floor", floor)
        self.device = torch.device(device)

    def estimate_permutation(self, wx: torch.Tensor, wo: torch.Tensor) -> torch.Tensor:
        """Positions from whitened statistics only (invariant to the unknown rotation)."""
        mx, mo = wx.mean(0), wo.mean(0)  # (N, D) per-position means
        gx, go = mx @ mx.T, mo @ mo.T
        ex, eo = (wx ** 2).sum(-1).mean(0), (wo ** 2).sum(-1).mean(0)  # per-position energy
        sig_x = torch.cat([ex[:, None], gx.sort(dim=1).values], 1)
        sig_o = torch.cat([eo[:, None], go.sort(dim=1).values], 1)
        perm = assign(torch.cdist(sig_o, sig_x) ** 2)
        for _ in range(self.refine_rounds):  # graph matching: row j of go against row l of gx, reordered by perm
            cost = torch.cdist(go, gx[:, perm]) ** 2 + (eo[:, None] - ex[None, :]) ** 2
            new = assign(cost)
            if torch.equal(new, perm):
                break
            perm = new
        return perm

    def on(self, view: View, command: str | None = None) -> AttackResult:
        store, public, target = view.need("store_features", "public_tokens", "target")
        r = self.run(store, public, target, view.aux_tokens, view.aux_labels)
        return self.result(r.leakage, command, r, identifier=r.identifier, whitened_pooled=r.whitened.as_dict(),
                           seconds=r.seconds, config=r.config)

    def run(self, store_features: torch.Tensor, public_tokens: torch.Tensor, target: Target,
            aux_tokens: torch.Tensor | None = None, aux_labels: torch.Tensor | None = None) -> AlignmentResult:
        """``store_features``: obfuscated rows the cloud holds; ``public_tokens``: clean ExtNet tokens of the
        adversary's own images (unlabelled: only their moments are used); ``aux_tokens``/``aux_labels``:
        labelled clean tokens to train the ``recnet`` identifier on."""
        for name, t in (("store_features", store_features), ("public_tokens", public_tokens)):
            if t.ndim != 3 or tuple(t.shape[1:]) != target.token_shape:
                raise ValueError(f"{name} must be (n, {target.token_shape[0]}, {target.token_shape[1]}), "
                                 f"got {tuple(t.shape)}")
        start = time.time()
        wx_fn, wo_fn = _whitener(public_tokens, self.floor), _whitener(store_features, self.floor)
        wx, wo = wx_fn(public_tokens), wo_fn(store_features)
        perm = self.estimate_permutation(wx, wo)
        anchors_x, anchors_o = [wx.mean(0)[perm]], [wo.mean(0)]
        if self.axes:
            anchors_x.append(_principal_axes(wx, self.axes)[perm].reshape(-1, wx.shape[-1]))
            anchors_o.append(_principal_axes(wo, self.axes).reshape(-1, wo.shape[-1]))
        rot = procrustes(torch.cat(anchors_x), torch.cat(anchors_o))  # o~ ~= x~ rot

        def invert(obf: torch.Tensor) -> torch.Tensor:
            x = wo_fn(obf) @ rot.T @ wx_fn.w_inv + wx_fn.mean
            return x.float().index_select(1, torch.argsort(perm))

        flipped = invert(target.flipped) if target.flipped is not None else None
        inverted = Target(invert(target.features), target.labels, target.gallery, target.probe, flipped)
        identify = build_identifier(self.identifier, self.recnet_cfg, aux_tokens, aux_labels, self.device)
        leak = identity_leakage(inverted, identify(inverted))
        white_flip = wo_fn(target.flipped).float() if target.flipped is not None else None
        white = Target(wo_fn(target.features).float(), target.labels, target.gallery, target.probe, white_flip)
        whitened = identity_leakage(white, pooled_embedder(white.features.mean(dim=(0, 1))))
        # M estimate in the row convention o - m_o = (x - m_x) M: M = W_x R W_o^-1
        matrix = (wx_fn.w @ rot @ wo_fn.w_inv).float()
        return AlignmentResult(leak.rate, leak.chance, leak, whitened, perm, matrix, self.identifier,
                               time.time() - start, {"axes": self.axes, "refine_rounds": self.refine_rounds,
                                                     "floor": self.floor, "store_rows": len(store_features),
                                                     "public_rows": len(public_tokens)})
