"""Leaked-pairs attack against a gallery of the adversary's own *clean* photos (issue 16's threat model).

Threat model, fixed here. The adversary holds: k leaked pairs (public ExtNet tokens of an owner training
image, and that image's obfuscated store row); the store (obfuscated rows; used unlabelled, for a PCA);
the public ExtNet and its public identifier (for the dlib ExtNet: the rest of dlib's network, the head,
mapping tokens to a 128-d descriptor); the cloud's trained RecNet; the method's design and public options
(Kerckhoffs), never the key. The gallery is the adversary's own clean photos of the owner's test persons
(clean tokens), the probes are the owner's obfuscated test features. Leakage = top-1 of probe -> gallery
(cosine), with n probes, a Wilson 95% interval and chance = 1 / gallery persons.

Estimators (one :class:`LeakedPairsAttack`, one curve point per (k, estimator)):

- ``identity`` (k = 0 only): the obfuscated features read as if they were clean tokens (no pairs at all);
- ``structured`` (XNN-aware, probes shaped like tokens): the permutation from M-invariant Gram
  fingerprints, M by orthogonal Procrustes / least squares once k*N >= D, below that by ridge with the
  penalty chosen on held-out pairs (leave one pair out); k = 1 is "not determined";
- ``ridge``: a generic linear inverse, obfuscated -> clean tokens, on the store's top principal axes
  (self-supervision from the unlabelled store), kernel ridge with the penalty chosen by leave-one-out
  on the pairs; k < 2 is "not determined";
- ``learned``: an MLP on the same store-PCA inputs, trained on the pairs to the identifier's embedding of
  the clean tokens (cosine loss, AdamW, early stopping on 20% held-out pairs); k < 16 is "not determined";
- ``bridge``: the cloud's RecNet embeds the obfuscated features (it reads them, whatever the key), and a
  ridge map fitted on the pairs (penalty by leave-one-out) carries its embedding to the identifier's
  space; k < 2 is "not determined". It needs no knowledge of the transform at all;
- ``profile`` and ``posterior`` (``veil.attacks.inner_products``): an orthogonal map keeps inner products, so
  each probe's inner products with the k leaked obfuscated rows are its inner products with the k leaked
  clean tokens; ``profile`` matches them (whitened) with the clean gallery's, ``posterior`` turns them into
  clean tokens (Gaussian posterior mean, prior from the adversary's clean gallery and pairs) for the
  identifier. No training, no key, no knowledge of the map's structure; determined from k = 1.

``strongest`` at each k is the best determined estimator *as scored on the probes*, an upper envelope
(optimistic for the attacker, so conservative for the owner).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from veil.attacks import invariants, params
from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.estimation import apply_inverse, assign
from veil.attacks.known_plaintext import _position_cost, estimate
from veil.attacks.leakage import LeakageResult, Target
from veil.attacks.ridge import RIDGE_GRID, choose_penalty, kernel_ridge, solve
from veil.metrics import Rate, top1
from veil.obfuscation.xnn import MATRIX_KINDS

ESTIMATORS = ("identity", "structured", "ridge", "learned", "bridge", "profile", "posterior")
DEFAULT_KS = (0, 1, 4, 16, 32, 64, 128, 256, 1024)
Embedder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CleanGalleryTarget:
    """Clean gallery tokens (g, N, D) of the owner's test persons and their obfuscated probes (p, ...)."""

    gallery: torch.Tensor
    gallery_labels: torch.Tensor
    probes: torch.Tensor
    probe_labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.gallery.ndim != 3:
            raise ValueError(f"gallery must be clean tokens (g, N, D), got {tuple(self.gallery.shape)}")
        if len(self.gallery) != len(self.gallery_labels) or len(self.probes) != len(self.probe_labels):
            raise ValueError("gallery/probes and their labels differ in length")
        if len(self.gallery) == 0 or len(self.probes) == 0:
            raise ValueError("gallery and probes must both be non-empty")

    @property
    def chance(self) -> float:
        return 1.0 / len(self.gallery)

    @classmethod
    def from_target(cls, target: Target) -> CleanGalleryTarget:
        """From a harness :class:`Target` made with ``gallery_kind="clean"`` (gallery rows are clean tokens)."""
        return cls(target.features[target.gallery].float(), target.labels[target.gallery],
                   target.features[target.probe].float(), target.labels[target.probe])


@dataclass
class InverseConfig:
    """The learned inverse's recipe (small on purpose: it trains once per k on CPU)."""

    pca: int = 256
    hidden: int = 512
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch: int = 256
    min_pairs: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pca", "hidden", "steps", "batch", "min_pairs"):
            params.positive_int(name, getattr(self, name))
        params.positive_float("lr", self.lr)
        params.non_negative_float("weight_decay", self.weight_decay)
        params.non_negative_int("seed", self.seed)


@dataclass
class CurvePoint:
    k: int
    estimator: str
    rate: Rate | None
    chance: float
    note: str = ""
    hits: torch.Tensor | None = None
    draws: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        base = {"k": self.k, "attack": self.estimator, "chance": self.chance, "note": self.note}
        if self.draws:
            base["draws"] = self.draws
        if self.rate is None:
            return {**base, "rate": None, "ci95": None, "hits": None, "n": None}
        return {**base, **self.rate.as_dict()}


@dataclass
class LeakedPairsResult:
    points: list[CurvePoint]
    seconds: float
    config: dict = field(default_factory=dict)

    def strongest(self) -> list[CurvePoint]:
        """Per k, the best estimator determined with at most k pairs (an adversary may ignore pairs), so the
        envelope never falls as k grows; ``attack`` = ``strongest:<estimator>``, ``note`` says at which k."""
        out: list[CurvePoint] = []
        best: CurvePoint | None = None
        for k in sorted({p.k for p in self.points}):
            for p in self.points:
                if p.k == k and p.rate is not None and (best is None or best.rate is None
                                                        or p.rate.value > best.rate.value):
                    best = p
            if best is not None:
                out.append(CurvePoint(k, f"strongest:{best.estimator}", best.rate, best.chance,
                                      f"{best.estimator} with k = {best.k}", best.hits, best.draws))
        return out

    def curve(self) -> list[dict]:
        return [p.as_dict() for p in self.points + self.strongest()]

    @classmethod
    def from_curve(cls, curve: Sequence[dict], seconds: float, config: dict | None = None) -> LeakedPairsResult:
        """A :meth:`curve` read back from disk (no per-probe hits). The strongest envelope is recomputed from the
        estimators' points, so a file written under an older envelope rule reads alike."""
        points = [CurvePoint(p["k"], p["attack"], None if p["rate"] is None else Rate(p["hits"], p["n"]),
                             p["chance"], p.get("note", ""), None, p.get("draws", []))
                  for p in curve if not p["attack"].startswith("strongest")]
        return cls(points, seconds, dict(config or {}))


def merge_draws(results: Sequence[LeakedPairsResult]) -> LeakedPairsResult:
    """One curve from runs on independent draws of the leaked set: per (k, estimator) the mean hits over the
    draws as the rate (its Wilson interval at n probes: the probes' uncertainty, not the draws'), each draw's
    rate in ``draws`` (their spread is the pair-choice uncertainty), and the first draw's per-probe hits."""
    if not results:
        raise ValueError("no draws to merge")
    first = results[0]
    merged = []
    for i, p in enumerate(first.points):
        same = [r.points[i] for r in results]
        if any((q.k, q.estimator) != (p.k, p.estimator) for q in same):
            raise ValueError("draws measured different (k, estimator) points")
        rates = [q.rate for q in same if q.rate is not None]
        if len(rates) != len(same):
            merged.append(CurvePoint(p.k, p.estimator, None, p.chance, p.note))
            continue
        mean_hits = round(sum(r.hits for r in rates) / len(rates))
        merged.append(CurvePoint(p.k, p.estimator, Rate(mean_hits, rates[0].n), p.chance,
                                 f"{p.note}; mean of {len(rates)} draws of the pairs" if len(rates) > 1 else p.note,
                                 p.hits, [r.value for r in rates]))
    return LeakedPairsResult(merged, sum(r.seconds for r in results), {**first.config, "draws": len(results)})


def k_half(curve: Sequence[CurvePoint], clean_rate: float) -> int | None:
    """The smallest k whose leakage reaches half of ``clean_rate``; None if no k in the curve does."""
    hit = [p.k for p in curve if p.rate is not None and p.rate.value >= clean_rate / 2]
    return min(hit) if hit else None


# -- linear algebra ------------------------------------------------------------------------------------

def store_pca(store: torch.Tensor | None, dim: int, fallback: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Projection onto the store's top ``dim`` principal axes (flattened rows), scaled to unit variance."""
    rows = (store if store is not None else fallback).reshape(len(store if store is not None else fallback), -1)
    rows = rows.double()
    mean = rows.mean(0)
    _, s, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    d = min(dim, vh.shape[0])
    axes = vh[:d].T / (s[:d] / max(1, len(rows) - 1) ** 0.5).clamp_min(1e-12)

    def project(x: torch.Tensor) -> torch.Tensor:
        return ((x.flatten(1).double() - mean) @ axes).float()

    return project


def _structured(clean: torch.Tensor, obf: torch.Tensor, matrix: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """XNN's (P, M) from k pairs: exact fit once k*N >= D, else ridge with leave-one-pair-out penalty."""
    k, n_tok, dim = clean.shape
    if k * n_tok >= dim:
        perm, mat, _ = estimate(clean, obf, matrix)
        return perm, mat, "procrustes" if matrix == "orthogonal" else "least squares"
    x, o = clean.double(), obf.double()
    perm = assign(_position_cost(x, o, matrix))
    a, b = x.index_select(1, perm), o

    def fit(idx: torch.Tensor, lam: float) -> torch.Tensor:
        return solve(a[idx].reshape(-1, dim), b[idx].reshape(-1, dim), lam)

    def leave_one_pair_out(lam: float) -> float:
        return sum(float((a[i] @ fit(torch.tensor([j for j in range(k) if j != i]), lam) - b[i]).pow(2).sum())
                   for i in range(k))

    best, _ = choose_penalty(RIDGE_GRID, leave_one_pair_out)
    return perm, fit(torch.arange(k), best).float(), f"ridge (penalty {best:g}, leave one pair out)"


def _learned(feats: torch.Tensor, targets: torch.Tensor, cfg: InverseConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """MLP feats -> targets' direction, early-stopped on 20% held-out pairs."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = torch.randperm(len(feats), generator=g)
    n_val = max(2, len(feats) // 5)
    val, fit = order[:n_val], order[n_val:]
    net = torch.nn.Sequential(torch.nn.Linear(feats.shape[1], cfg.hidden), torch.nn.GELU(),
                              torch.nn.Linear(cfg.hidden, targets.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tgt = F.normalize(targets.float(), dim=1)
    best, best_state = -2.0, None
    for step in range(cfg.steps):
        net.train()
        pick = fit[torch.randint(len(fit), (min(cfg.batch, len(fit)),), generator=g)]
        loss = 1 - F.cosine_similarity(net(feats[pick]), tgt[pick]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 9 or step == cfg.steps - 1:
            net.eval()
            with torch.no_grad():
                score = float(F.cosine_similarity(net(feats[val]), tgt[val]).mean())
            if score > best:
                best, best_state = score, {n: t.clone() for n, t in net.state_dict().items()}
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return net(x)

    return predict


def _batched(fn: Embedder, x: torch.Tensor, size: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)]) if len(x) else fn(x)


class LeakedPairsAttack(Attack):
    """k leaked pairs + the store + the cloud's RecNet vs a clean gallery; one curve point per (k, estimator)."""

    name = "leaked_pairs"
    holdings: ClassVar[tuple[str, ...]] = (
        "k leaked (clean ExtNet tokens, obfuscated store row) pairs of owner training images (pairs)",
        "the store's obfuscated rows, unlabelled (store_features, optional)",
        "the cloud's trained RecNet (recnet, optional: the bridge estimator)",
        "the public ExtNet's identifier (e.g. the rest of dlib's network)",
        "clean photos of the owner's test persons as gallery; the owner's obfuscated test features as probes",
        "the method's design and public options (Kerckhoffs), never the key")

    def __init__(self, ks: Sequence[int] = DEFAULT_KS, estimators: Sequence[str] = ESTIMATORS,
                 matrix: str = "orthogonal", inverse: InverseConfig | None = None,
                 identifier: Embedder | None = None) -> None:
        ks = list(ks)
        if not ks:
            raise params.AttackParameterError("ks", "ks must list at least one number of pairs")
        self.ks = sorted({params.non_negative_int("ks", k) for k in ks})
        estimators = list(estimators)
        if not estimators:
            raise params.AttackParameterError("estimators", "estimators must name at least one estimator")
        self.estimators = [params.choice("estimators", e, ESTIMATORS) for e in estimators]
        self.matrix = params.choice("matrix", matrix, MATRIX_KINDS)
        self.inverse = inverse if inverse is not None else InverseConfig()
        if not isinstance(self.inverse, InverseConfig):
            raise params.AttackParameterError("inverse", "inverse must be an InverseConfig")
        if identifier is not None and not callable(identifier):
            raise params.AttackParameterError("identifier", "identifier must map clean tokens to embeddings")
        self.identifier = identifier or (lambda t: t.float().mean(dim=1))
        self._pca: tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]] | None = None

    def _store_projection(self, store: torch.Tensor | None,
                          fallback: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """:func:`store_pca` of the store, computed once per store tensor: draws of the pairs share one store, whose
        SVD (thousands x N*D, float64) would otherwise be recomputed, with its transient buffers, for every draw."""
        if store is not None and self._pca is not None and self._pca[0] is store:
            return self._pca[1]
        project = store_pca(store, self.inverse.pca, fallback)
        self._pca = (store, project) if store is not None else None
        return project

    def on(self, view: View, command: str | None = None) -> AttackResult:
        """Run on a view whose target was made with a clean gallery; the result is the strongest point at max k."""
        (clean, obf), target = view.need("pairs", "target")
        r = self.run(clean, obf, CleanGalleryTarget.from_target(target), view.store_features, view.recnet)
        result = self.curve_result(r, len(target.gallery), command)
        if result.leakage is None:
            raise ValueError("no estimator was determined at any k")
        result.raw = r
        return result

    @classmethod
    def curve_result(cls, r: LeakedPairsResult, gallery: int, command: str | None = None,
                     **details: Any) -> AttackResult:
        """A curve (one run, or merged over draws of the pairs) as this attack's result: its rate is the strongest
        estimator at the largest k (none if no estimator was determined), the curve, seconds and config are its
        details. The per-probe hits go with the rate only where it is one draw's: a mean over draws has no
        single hit vector."""
        strongest = r.strongest()
        top = strongest[-1] if strongest else None
        leakage = None
        if top is not None and top.rate is not None:
            leakage = LeakageResult(top.rate, top.chance, gallery, top.hits if len(top.draws) <= 1 else None)
        return AttackResult(cls.name, leakage, cls.holdings, command,
                            {**details, "curve": r.curve(), "seconds": r.seconds, "config": r.config})

    def run(self, clean: torch.Tensor, obfuscated: torch.Tensor, target: CleanGalleryTarget,
            store_features: torch.Tensor | None = None, recnet: torch.nn.Module | None = None,
            log: Callable[[str], None] = lambda _m: None) -> LeakedPairsResult:
        """``clean`` (K, N, D) and ``obfuscated`` (K, ...) pairs, K >= max(ks); the first k are used for each k."""
        if len(clean) != len(obfuscated) or clean.ndim != 3:
            raise ValueError(f"pairs must be clean (K, N, D) and obfuscated (K, ...), got {tuple(clean.shape)} "
                             f"and {tuple(obfuscated.shape)}")
        if tuple(clean.shape[1:]) != tuple(target.gallery.shape[1:]):
            raise ValueError(f"pairs have tokens {tuple(clean.shape[1:])}, gallery {tuple(target.gallery.shape[1:])}")
        if tuple(obfuscated.shape[1:]) != tuple(target.probes.shape[1:]):
            raise ValueError(f"pairs' obfuscated rows {tuple(obfuscated.shape[1:])} differ from the probes' "
                             f"{tuple(target.probes.shape[1:])}")
        if max(self.ks) > len(clean):
            raise ValueError(f"ks asks for {max(self.ks)} pairs, only {len(clean)} given")
        start = time.time()
        shape = tuple(clean.shape[1:])
        tokenlike = tuple(obfuscated.shape[1:]) == shape
        same_numel = math.prod(obfuscated.shape[1:]) == math.prod(shape)
        probes = target.probes.float()
        gal_emb = _batched(self.identifier, target.gallery.float())
        pair_emb = _batched(self.identifier, clean.float())
        project = self._store_projection(store_features, obfuscated) if (
            {"ridge", "learned"} & set(self.estimators)) else None
        unused = torch.empty(0)  # the store-PCA inputs, computed only for the estimators that read them
        probe_feats = project(probes) if project else unused
        pair_feats = project(obfuscated.float()) if project else unused
        rec_probe = rec_pairs = None
        if recnet is not None and "bridge" in self.estimators:
            recnet.eval()
            rec_probe, rec_pairs = _batched(recnet, probes), _batched(recnet, obfuscated.float())

        def score(k: int, est: str, emb: torch.Tensor | None, note: str = "",
                  gallery: torch.Tensor | None = None) -> CurvePoint:
            if emb is None:
                return CurvePoint(k, est, None, target.chance, note)
            rate, hits = top1(gal_emb if gallery is None else gallery, target.gallery_labels, emb,
                              target.probe_labels)
            return CurvePoint(k, est, rate, target.chance, note, hits)

        points = []
        for k in self.ks:
            for est in self.estimators:
                t = time.time()
                if est == "identity":
                    if k != 0:
                        continue
                    if not same_numel:
                        points.append(score(k, est, None, "not applicable: obfuscated rows are not token-shaped"))
                        continue
                    points.append(score(k, est, _batched(self.identifier, probes.reshape(-1, *shape)),
                                        "obfuscated features read as clean tokens"))
                    continue
                if k == 0:
                    continue
                if est == "structured":
                    if not tokenlike:
                        points.append(score(k, est, None, "not applicable: the method is not token-wise"))
                    elif k < 2 and k * shape[0] < shape[1]:
                        points.append(score(k, est, None, f"not determined: {k * shape[0]} token rows for "
                                                          f"{shape[1]} unknowns per column, no held-out pair"))
                    else:
                        perm, mat, how = _structured(clean[:k], obfuscated[:k], self.matrix)
                        inv = apply_inverse(probes, perm, mat)
                        points.append(score(k, est, _batched(self.identifier, inv), how))
                elif est == "ridge":
                    if k < 2:
                        points.append(score(k, est, None, "not determined: no held-out pair to set the penalty"))
                    else:
                        predict, lam = kernel_ridge(pair_feats[:k], clean[:k].reshape(k, -1))
                        inv = predict(probe_feats).reshape(-1, *shape)
                        points.append(score(k, est, _batched(self.identifier, inv),
                                            f"penalty {lam:g} (leave-one-out)"))
                elif est == "learned":
                    if k < self.inverse.min_pairs:
                        points.append(score(k, est, None, f"not determined: fewer than {self.inverse.min_pairs} "
                                                          "pairs to train and hold out"))
                    else:
                        predict = _learned(pair_feats[:k], pair_emb[:k], self.inverse)
                        points.append(score(k, est, _batched(predict, probe_feats), "MLP on store-PCA inputs"))
                elif est == "bridge":
                    if rec_probe is None or rec_pairs is None:
                        points.append(score(k, est, None, "not applicable: no cloud RecNet held"))
                    elif k < 2:
                        points.append(score(k, est, None, "not determined: no held-out pair to set the penalty"))
                    else:
                        predict, lam = kernel_ridge(rec_pairs[:k], pair_emb[:k])
                        points.append(score(k, est, predict(rec_probe), f"penalty {lam:g} (leave-one-out)"))
                elif est in ("profile", "posterior"):
                    points.append(self._inner_products(k, est, clean[:k], obfuscated[:k], target, probes, shape,
                                                       score))
                log(f"k={k:>4} {est:<10} {points[-1].rate}  ({time.time() - t:.1f} s)")
        return LeakedPairsResult(points, time.time() - start,
                                 {"ks": self.ks, "estimators": self.estimators, "matrix": self.matrix,
                                  "inverse": asdict(self.inverse), "ridge_grid": list(RIDGE_GRID)})

    def _inner_products(self, k: int, est: str, clean: torch.Tensor, obf: torch.Tensor, target: CleanGalleryTarget,
                        probes: torch.Tensor, shape: tuple[int, ...], score: Callable[..., CurvePoint]) -> CurvePoint:
        """The orthogonality estimators: each probe's exact inner products with the k leaked clean vectors.

        ``profile`` matches whitened inner-product profiles (gallery: its own clean photos' profiles);
        ``posterior`` turns a profile into clean tokens by the Gaussian posterior mean (prior: the adversary's
        gallery and leaked clean tokens) and embeds them with the public identifier. Neither fits a map: they
        rest only on ``<Q v, Q x> = <v, x>``, and are wrong to the degree the transform is not orthogonal.
        """
        s = invariants.inner_product_profiles(obf, probes)
        pool = invariants.prior_pool(target.gallery, clean)
        if est == "profile":
            ref = invariants.inner_product_profiles(clean, pool)
            gal = invariants.whitened_profiles(invariants.inner_product_profiles(clean, target.gallery), ref)
            return score(k, est, invariants.whitened_profiles(s, ref).float(),
                         "whitened inner-product profiles vs the clean gallery's", gal.float())
        tokens = invariants.posterior_mean(s, clean, pool).float().reshape(-1, *shape)
        return score(k, est, _batched(self.identifier, tokens), "Gaussian posterior mean of the clean tokens")


__all__ = ["CleanGalleryTarget", "CurvePoint", "DEFAULT_KS", "ESTIMATORS", "InverseConfig", "LeakedPairsAttack",
           "LeakedPairsResult", "k_half", "kernel_ridge", "merge_draws", "store_pca"]
