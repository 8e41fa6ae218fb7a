"""Known-plaintext attack: k leaked (clean ExtNet tokens, obfuscated tokens) pairs break XNN's key.

XNN is linear: ``O = X[:, P] M``. Each pair gives N x D equations, so about D / N pairs pin down M.
The adversary (1) matches token positions by their norm profile over the k pairs (exact when M is
orthogonal, approximate otherwise), (2) fits M (orthogonal Procrustes when the manifest says
``orthogonal``, least squares otherwise), (3) re-matches positions by the fit's residual and refits,
a few rounds, (4) inverts the owner's obfuscated test features and identifies them with its own
identifier. ``k = 0`` is the no-inversion reference: the identifier applied to the obfuscated tokens.
The XNN paper's own section 7.2 names this weakness; this measures it as a curve over k.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.estimation import apply_inverse, assign, least_squares, procrustes
from veil.attacks.identifiers import IDENTIFIERS, build_identifier
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.metrics import Rate
from veil.obfuscation.xnn import MATRIX_KINDS


@dataclass
class KnownPlaintextPoint:
    """Leakage with ``k`` pairs, and the parameters the adversary estimated from them."""

    k: int
    rate: Rate
    chance: float
    leakage: LeakageResult
    permutation: torch.Tensor
    matrix: torch.Tensor
    residual: float


@dataclass
class KnownPlaintextResult:
    """The leakage curve over k; ``rate``/``chance`` are those at the largest k."""

    rate: Rate
    chance: float
    points: list[KnownPlaintextPoint]
    identifier: str
    seconds: float
    config: dict = field(default_factory=dict)


def estimate(clean: torch.Tensor, obfuscated: torch.Tensor, matrix: str = "orthogonal",
             rounds: int = 5) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(permutation, matrix, relative residual) from paired tokens, both (k, N, D)."""
    x, o = clean.double(), obfuscated.double()
    n_tok, dim = x.shape[1:]
    perm = assign(_position_cost(x, o, matrix))
    mat = torch.eye(dim, dtype=torch.float64)
    for _ in range(rounds):
        a, b = x.index_select(1, perm).reshape(-1, dim), o.reshape(-1, dim)
        mat = procrustes(a, b) if matrix == "orthogonal" else least_squares(a, b)
        mapped = x @ mat  # (k, N, D): every clean position under the current M
        cost = torch.cdist(o.transpose(0, 1).reshape(n_tok, -1), mapped.transpose(0, 1).reshape(n_tok, -1)) ** 2
        new = assign(cost)
        if torch.equal(new, perm):
            break
        perm = new
    a, b = x.index_select(1, perm).reshape(-1, dim), o.reshape(-1, dim)
    mat = procrustes(a, b) if matrix == "orthogonal" else least_squares(a, b)
    residual = float((a @ mat - b).norm() / b.norm().clamp_min(1e-12))
    return perm, mat.float(), residual


def _invariant_blocks(tokens: torch.Tensor, matrix: str) -> torch.Tensor | None:
    """Per position, a (k, k) block of a matrix over all kN token rows that ``M`` leaves unchanged.

    Orthogonal M keeps inner products, so the Gram matrix ``Z Z^T`` is invariant. Any invertible M
    keeps the projector onto the column space of ``Z`` (``Z pinv(Z)``), informative once kN > D.
    Either way the permutation only reorders the blocks, so their diagonal blocks fingerprint positions.
    """
    k, n_tok, dim = tokens.shape
    z = tokens.transpose(0, 1).reshape(n_tok * k, dim)
    if matrix == "orthogonal":
        full = z @ z.T
    elif n_tok * k > dim:
        full = z @ torch.linalg.pinv(z)
    else:
        return None
    blocks = full.reshape(n_tok, k, n_tok, k)
    return torch.stack([blocks[j, :, j, :] for j in range(n_tok)]).reshape(n_tok, -1)


def _position_cost(x: torch.Tensor, o: torch.Tensor, matrix: str) -> torch.Tensor:
    """cost[j, l]: how unlike obfuscated position j is to clean position l (0 for the true match)."""
    bx, bo = _invariant_blocks(x, matrix), _invariant_blocks(o, matrix)
    if bx is None or bo is None:  # too few pairs for an exact invariant: token norms, approximately kept
        bx, bo = x.norm(dim=-1).T, o.norm(dim=-1).T
    return torch.cdist(bo, bx) ** 2


class KnownPlaintextAttack(Attack):
    """Estimate P and M from leaked pairs, invert the owner's test features, identify; one point per k."""

    name = "known_plaintext"
    title = label = "known-plaintext"
    holdings = ("k leaked (clean ExtNet tokens, obfuscated store row) pairs (pairs)",
                "the store's public manifest (matrix)", "the owner's obfuscated test features (target)",
                "optionally labelled auxiliary tokens for the recnet identifier")

    def __init__(self, ks: Sequence[int] = (0, 1, 2, 4, 8, 16, 32, 64), matrix: str = "orthogonal",
                 identifier: str = "pooled", recnet: AttackRecNetConfig | None = None, rounds: int = 5,
                 device: torch.device | str = "cpu") -> None:
        ks = list(ks)
        if not ks:
            raise params.AttackParameterError("ks", "ks must list at least one number of pairs")
        self.ks = sorted({params.non_negative_int("ks", k) for k in ks})
        self.matrix = params.choice("matrix", matrix, MATRIX_KINDS)
        self.identifier = params.choice("identifier", identifier, IDENTIFIERS)
        self.recnet_cfg = params.recnet_config(recnet, AttackRecNetConfig())
        self.rounds = params.positive_int("rounds", rounds)
        self.device = torch.device(device)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        """The result at the largest k; ``details['points']`` holds the curve (estimates stay in ``raw``)."""
        (clean, obfuscated), target = view.need("pairs", "target")
        r = self.run(clean, obfuscated, target, view.aux_tokens, view.aux_labels)
        points = [{"k": p.k, **p.leakage.as_dict(), "residual": p.residual} for p in r.points]
        return self.result(r.points[-1].leakage, command, r, identifier=r.identifier, points=points,
                           seconds=r.seconds, config=r.config)

    def run(self, clean: torch.Tensor, obfuscated: torch.Tensor, target: Target,
            aux_tokens: torch.Tensor | None = None, aux_labels: torch.Tensor | None = None) -> KnownPlaintextResult:
        """``clean``/``obfuscated``: the leaked pairs (K, N, D), K >= max(ks); the first k are used for each k."""
        if clean.shape != obfuscated.shape or clean.ndim != 3:
            raise ValueError(f"clean and obfuscated pairs must have the same (K, N, D) shape, got "
                             f"{tuple(clean.shape)} and {tuple(obfuscated.shape)}")
        if tuple(clean.shape[1:]) != target.token_shape:
            raise ValueError(f"pairs have tokens {tuple(clean.shape[1:])}, target has {target.token_shape}")
        if max(self.ks) > len(clean):
            raise ValueError(f"ks asks for {max(self.ks)} pairs, only {len(clean)} given")
        start = time.time()
        identify = build_identifier(self.identifier, self.recnet_cfg, aux_tokens, aux_labels, self.device)
        n_tok, dim = target.token_shape
        points = []
        for k in self.ks:
            if k == 0:
                perm, mat, residual = torch.arange(n_tok), torch.eye(dim), float("nan")
            else:
                perm, mat, residual = estimate(clean[:k], obfuscated[:k], self.matrix, self.rounds)
            flipped = apply_inverse(target.flipped, perm, mat) if target.flipped is not None else None
            inverted = Target(apply_inverse(target.features, perm, mat), target.labels, target.gallery,
                              target.probe, flipped)
            leak = identity_leakage(inverted, identify(inverted))
            points.append(KnownPlaintextPoint(k, leak.rate, leak.chance, leak, perm, mat, residual))
        last = points[-1]
        return KnownPlaintextResult(last.rate, last.chance, points, self.identifier, time.time() - start,
                                    {"ks": self.ks, "matrix": self.matrix, "rounds": self.rounds})
