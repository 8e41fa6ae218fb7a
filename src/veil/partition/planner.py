"""``plan(...)``: attack the exposed map and cost the enclave part at every candidate split; pick the cheapest safe one.

Decision rule (stated, so it can be argued with): a split is *safe* when, for every attack tried, the upper end of
the 95% interval of mean SSIM over the victim images is at or below ``max_ssim`` (0.3 is He et al.'s line for
"unrecognisable"). Among safe splits the planner picks the least enclave work: fewest enclave FLOPs, then fewest
enclave parameters. If no split is safe it says so and recommends running the whole model in the enclave.

With an :class:`~veil.attacks.reconstruction_identity.IdentityProbe` and ``max_identity`` (a multiple of chance)
the rule bounds *identity leakage* instead of SSIM: a split is safe when every attack converged (an attack still
improving is "not determined", never evidence of safety) and, for each, the upper 95% bound of the top-1 rate at
which a face recogniser names the victim from its reconstruction is at most ``max_identity`` x chance.
``white_box`` adds the white-box inversion under the public weights (He et al. 2019) to the attacks tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from veil.attacks.reconstruction import PLATEAU as LEARNED_PLATEAU
from veil.attacks.reconstruction import prior_scores
from veil.attacks.reconstruction_identity import IdentityProbe
from veil.attacks.white_box import InversionResult, WhiteBoxInversionAttack, plateaued
from veil.errors import VeilError
from veil.partition.attack import KINDS, ReconstructionResult, query, reconstruction_attack
from veil.partition.cost_model import SGXCostModel, measure_part
from veil.partition.models import ModelSpec, preprocess
from veil.partition.sequence import LayerSequence, SplitPoint, candidate_splits, resolve_split, to_sequence
from veil.partition.split import Part


def converged(result: ReconstructionResult | InversionResult) -> bool:
    """Whether an attack's loss reached its plateau (the white-box attack decides this itself)."""
    if isinstance(result, InversionResult):
        return result.converged
    return plateaued(result.history, 1, LEARNED_PLATEAU)


@dataclass
class SplitReport:
    point: SplitPoint
    attacks: dict[str, ReconstructionResult | InversionResult]
    enclave_cost: dict
    accelerator_cost: dict
    modelled: dict
    flop_share: float
    param_share: float
    safe: bool
    identity: dict[str, dict] = field(default_factory=dict)

    @property
    def worst_ssim(self) -> float:
        return max(r.summary()["ssim"]["ci95"][1] for r in self.attacks.values())

    @property
    def determined(self) -> bool:
        return all(converged(r) for r in self.attacks.values())

    @property
    def worst_identity(self) -> float | None:
        """The largest upper 95% bound of identity top-1 over the attacks (None when not measured)."""
        return max((d["ci95"][1] for d in self.identity.values()), default=None)

    def as_dict(self) -> dict:
        attacks = {k: {**r.summary(), "converged": converged(r), **(
                       {"identity": self.identity[k]} if k in self.identity else {})} for k, r in self.attacks.items()}
        return {"split": {"index": self.point.index, "label": self.point.label}, "attacks": attacks,
                "worst_ssim_upper95": self.worst_ssim, "worst_identity_upper95": self.worst_identity,
                "determined": self.determined, "safe": self.safe,
                "enclave": self.enclave_cost, "accelerator": self.accelerator_cost,
                "enclave_flop_share": self.flop_share, "enclave_param_share": self.param_share,
                "enclave_modelled_sgx": self.modelled}


@dataclass
class Plan:
    arch: str
    max_ssim: float
    splits: list[SplitReport]
    choice: SplitReport | None
    full_model: dict
    cost_model: dict
    seconds: float
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"model": self.arch, "max_ssim": self.max_ssim,
                "rule": "safe = upper 95% CI of mean SSIM <= max_ssim for every attack; choose least enclave FLOPs",
                "choice": ({"index": self.choice.point.index, "label": self.choice.point.label}
                           if self.choice else None),
                "recommendation": (f"split after {self.choice.point.label} (enclave runs units "
                                   f"[0, {self.choice.point.index}))" if self.choice else
                                   "no split keeps reconstruction below the bound: run the whole model in the enclave"),
                "splits": [s.as_dict() for s in self.splits], "full_model": self.full_model,
                "sgx_cost_model": self.cost_model, "seconds": self.seconds, **self.extra}


def plan(model: nn.Module, spec: ModelSpec, aux_images: torch.Tensor, victim_images: torch.Tensor,
         max_ssim: float = 0.3, splits: list[int | str] | None = None, attacks: tuple[str, ...] = KINDS,
         epochs: int = 8, cost_model: SGXCostModel | None = None, seed: int = 0, timing_batch: int = 16,
         log: Callable[[str], None] | None = None, over_prior: float | None = None,
         white_box: dict | None = None, identity: IdentityProbe | None = None,
         max_identity: float | None = None, learned: dict | None = None) -> Plan:
    """Attack and cost every candidate split of ``model`` (block boundaries unless ``splits`` names some).

    ``over_prior`` replaces the absolute bound by one relative to what the adversary gets with no features
    at all (its mean auxiliary image): bound = that SSIM + ``over_prior``. On aligned faces the mean face
    alone scores about 0.35, so an absolute 0.3 can be unreachable for every split.

    ``white_box``: also invert each split's map through its public weights (the dict holds
    :class:`~veil.attacks.white_box.WhiteBoxInversionAttack`'s parameters, checked before any work).
    ``identity``: score every reconstruction by a face recogniser against a clean gallery of the victims
    (``victim_images`` in the probe's order). ``max_identity`` (needs ``identity``): the bound, a multiple of
    chance, replacing the SSIM rule. ``learned``: budget keywords for the learned attacks (``plateau``,
    ``max_seconds``, ``size`` of :func:`~veil.attacks.reconstruction.reconstruction_attack`): ``epochs`` is then
    the most epochs, and an attack stopped by its time budget while still improving is not converged.
    """
    if not 0.0 < max_ssim <= 1.0:
        raise VeilError(f"--max-ssim must be in (0, 1], got {max_ssim}")
    if over_prior is not None and not 0.0 <= over_prior < 1.0:
        raise VeilError(f"--over-prior must be in [0, 1), got {over_prior}")
    if max_identity is not None and (identity is None or not max_identity >= 1.0):
        raise VeilError("--max-identity needs an identity probe and a multiple of chance >= 1, "
                        f"got {max_identity}")
    if white_box is not None:
        WhiteBoxInversionAttack(lambda x: x, **white_box)  # a bad parameter fails now, not after hours
    baseline = prior_baseline(aux_images, victim_images)
    if over_prior is not None:
        max_ssim = min(1.0, baseline["ssim_mean"] + over_prior)
    if not attacks and white_box is None:
        raise VeilError("no attack to run: name a learned attack or enable the white-box inversion")
    for a in attacks:
        if a not in KINDS:
            raise VeilError(f"unknown attack {a!r}; choose from {', '.join(KINDS)}")
    cost_model = cost_model or SGXCostModel()
    model = model.eval()
    t0 = time.perf_counter()
    seq: LayerSequence = to_sequence(model, preprocess(victim_images[:2], spec))
    points = [resolve_split(seq, s) for s in splits] if splits else candidate_splits(seq)
    if not points:
        raise VeilError("the model has no candidate split points")

    def prep(x: torch.Tensor) -> torch.Tensor:
        return preprocess(x, spec)

    x_time = prep(victim_images[:timing_batch])
    full = measure_part(seq, x_time)
    full_modelled = cost_model.modelled_seconds(full.measured_s, full.weight_bytes,
                                                full.peak_activation_bytes)
    full_model = {**full.as_dict(), "all_enclave_modelled_sgx": full_modelled,
                  "all_accelerator_measured_s": full.measured_s}
    reports = []
    for p in points:
        head, tail = Part(seq, 0, p.index).eval(), Part(seq, p.index, len(seq)).eval()
        with torch.no_grad():
            victim_features = query(head, victim_images, prep)
            aux_features = query(head, aux_images, prep)
        results: dict[str, ReconstructionResult | InversionResult] = {}
        for kind in attacks:
            if log:
                log(f"{spec.arch} split {p.label}: {kind} attack on {tuple(victim_features.shape[1:])}")
            results[kind] = reconstruction_attack(head, aux_images, victim_features, victim_images, prep, kind=kind,
                                                  epochs=epochs, seed=seed, aux_features=aux_features,
                                                  keep=len(victim_images) if identity is not None else 8,
                                                  on_epoch=_epoch_log(log, spec.arch, p.label, kind),
                                                  **(learned or {}))
        if white_box is not None:
            if log:
                log(f"{spec.arch} split {p.label}: white-box inversion (public weights)")
            for q in head.parameters():
                q.requires_grad_(False)
            inverter = WhiteBoxInversionAttack(_composed(head, prep), **white_box)
            results["white_box"] = inverter.run(victim_features, aux_images, victim_images, log)
        found = {k: identity(_images(r)) for k, r in results.items()} if identity is not None else {}
        enc = measure_part(head, x_time)
        acc = measure_part(tail, head(x_time)) if p.index < len(seq) else None
        modelled = cost_model.modelled_seconds(enc.measured_s, enc.weight_bytes, enc.peak_activation_bytes)
        rep = SplitReport(p, results, enc.as_dict(), acc.as_dict() if acc else {}, modelled,
                          enc.flops / max(full.flops, 1), enc.params / max(full.params, 1), False, found)
        reports.append(rep)
        if log:
            log(f"{spec.arch} split {p.label}: worst SSIM (upper 95%) {rep.worst_ssim:.3f}, identity (upper 95%) "
                f"{rep.worst_identity}, determined {rep.determined}, enclave FLOP share {rep.flop_share:.1%}")
    bound = {"bound": "prior_baseline.ssim_mean + over_prior", "over_prior": over_prior} if over_prior is not None \
        else {"bound": "absolute"}
    if identity is not None:
        baseline["identity"] = identity.prior(aux_images)
    if max_identity is not None and identity is not None:
        limit = max_identity * identity.chance
        bound = {"bound": "identity top-1 upper 95% <= max_identity x chance, every attack converged",
                 "rule": "safe = every attack converged and its identity top-1 upper 95% <= max_identity x chance; "
                         "choose least enclave FLOPs",
                 "max_identity_x_chance": max_identity, "max_identity": limit}
        choice = choose_by_identity(reports, limit)
    else:
        choice = choose(reports, max_ssim)
    for rep in reports:
        worst = rep.worst_identity
        rep.safe = (rep.determined and worst is not None and worst <= max_identity * identity.chance
                    if max_identity is not None and identity is not None else rep.worst_ssim <= max_ssim)
    return Plan(spec.arch, max_ssim, reports, choice, full_model, cost_model.as_dict(),
                time.perf_counter() - t0, {"prior_baseline": baseline, **bound})


def _epoch_log(log: Callable[[str], None] | None, arch: str, label: str,
               kind: str) -> Callable[[int, float], None] | None:
    if log is None:
        return None

    def report(epoch: int, loss: float) -> None:
        log(f"{arch} split {label}: {kind} epoch {epoch} loss {loss:.5f}")

    return report


def _composed(head: nn.Module, prep: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        return head(prep(x))

    return run


def _images(result: ReconstructionResult | InversionResult) -> torch.Tensor:
    return result.reconstructions if isinstance(result, InversionResult) else result.samples


def prior_baseline(aux_images: torch.Tensor, victim_images: torch.Tensor) -> dict:
    """SSIM/PSNR of the adversary's *mean auxiliary image* against each victim image: what it gets with no features.

    On aligned faces this prior alone scores well above zero, so an SSIM bound should be read against it.
    """
    ssim, psnr = prior_scores(aux_images, victim_images)
    return {"what": "adversary's mean auxiliary image, no features used", "n": len(ssim),
            "ssim_mean": float(ssim.mean()), "psnr_db_mean": float(psnr.mean())}


def choose_by_identity(reports: list[SplitReport], limit: float) -> SplitReport | None:
    """The split with the least enclave work among those whose every attack converged and named the victims at
    most ``limit`` (upper 95% bound of top-1)."""
    safe = [r for r in reports if r.determined and r.worst_identity is not None and r.worst_identity <= limit]
    return min(safe, key=lambda r: (r.enclave_cost["flops"], r.enclave_cost["params"])) if safe else None


def choose(reports: list[SplitReport], max_ssim: float) -> SplitReport | None:
    """The safe split (every attack's SSIM upper 95% bound <= ``max_ssim``) with the least enclave work."""
    safe = [r for r in reports if r.worst_ssim <= max_ssim]
    return min(safe, key=lambda r: (r.enclave_cost["flops"], r.enclave_cost["params"])) if safe else None
