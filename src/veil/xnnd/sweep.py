"""XNN-d's privacy-utility curve on cached ExtNet tokens: one setting = (noise bound eps, adversary strength).

Everything here works on the owner's cached clean tokens (``veil.xnnd.token_cache``): stage 1 trains
a :class:`~veil.xnnd.token_noise.TokenNoiseEncoder`, the teacher is trained once, each setting's
server RecNet is distilled from it, and every attack is scored on the same intercepted features.
The experimenter holds the encoder; each attack is handed only what its adversary holds:

- **black-box** (paper 5.3): FG's answers for the adversary's own aux images (query access),
  a RecNet trained on them, probes matched against FG features of one photo per owner test person;
  a curve over nested query budgets, headline at the largest;
- **transfer**: a RecNet trained on *clean* public tokens of the aux images, applied as it is;
- **expectation over the noise**: the same with fresh random noise of the public bound every batch;
- **known-plaintext**: k leaked (clean, noised) pairs of the owner's training images; an affine
  de-noising map (noised token -> clean token, shared by the N positions) fitted by ridge regression
  with the penalty chosen on held-out leaked pairs, then the transfer RecNet on the de-noised probes.
  Ordinary least squares needs N*k >= D + 1 rows; with fewer the attack is reported as
  *not determined* (no figure), never as a leakage rate.

Every rate is top-1 over the owner's test probes with a Wilson 95% interval, n and chance 1/gallery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from veil.attacks.black_box import BlackBoxAttack
from veil.attacks.denoiser import apply_denoiser, fit_denoiser
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet, recnet_embedder
from veil.errors import VeilError
from veil.models.recnet import RecNet
from veil.obfuscation import registry
from veil.presets import STRONG_EXTNET_CLOUD
from veil.xnnd.config import AdversarialConfig, DistillConfig
from veil.xnnd.distill import distill_server, teacher_logits, train_teacher
from veil.xnnd.stage1 import train_token_noise_encoder
from veil.xnnd.token_cache import TokenGroup
from veil.xnnd.token_noise import TokenNoiseEncoder

# Adversary strength in stage 1. "weak" is today's game (one adversary, one step per encoder step);
# "strong": a pool of 2 adversaries, each stepped per encoder step, one re-initialised every half epoch in turn,
# so the encoder faces fresh recognisers; "steps": one adversary, 3 steps per encoder step.
ADVERSARIES: dict[str, dict] = {
    "weak": {"adversary_steps": 1, "adversary_pool": 1, "reinit_every": 0},
    "strong": {"adversary_steps": 1, "adversary_pool": 2, "reinit_every": -1},  # -1: every half epoch
    "steps": {"adversary_steps": 3, "adversary_pool": 1, "reinit_every": 0},
}
ATTACKS = ("black_box", "transfer", "expectation", "known_plaintext")


def adversarial_config(eps: float, adversary: str, epochs: int, rows: int, batch_size: int = 64,
                       seed: int = 0, encoder_depth: int = 0, adversary_depth: int = 1) -> AdversarialConfig:
    if adversary not in ADVERSARIES:
        raise VeilError(f"adversary must be one of {', '.join(ADVERSARIES)}, got {adversary!r}")
    spec = dict(ADVERSARIES[adversary])
    if spec["reinit_every"] < 0:
        spec["reinit_every"] = max(1, rows // batch_size // 2)
    return AdversarialConfig(epochs=epochs, batch_size=min(batch_size, rows), eps=eps, encoder="tokens", seed=seed,
                             encoder_depth=encoder_depth, adversary_depth=adversary_depth, **spec)


@dataclass
class SweepConfig:
    eps: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    adversaries: tuple[str, ...] = ("weak", "strong")
    stage1_epochs: int = 3
    teacher_epochs: int = 8
    student_epochs: int = 6
    attack_epochs: int = 8
    budgets: tuple[int, ...] = (200,)
    ks: tuple[int, ...] = (4, 16, 64, 256)
    seed: int = 0
    recnet_depth: int = 1        # every RecNet (teacher, server, each attacker, stage 1's adversaries): same depth;
    #                              0: the cloud's strong recipe (linear, identity-initialised, class-mean head, its
    #                              lr) for teacher, server and attackers, stage 1's adversaries at depth 1
    encoder_depth: int = 0       # token encoder: per-token MLP (0) or transformer blocks before it
    extra: tuple[str, ...] = ()  # further "eps/adversary" settings, e.g. "1/strong"

    def settings(self) -> list[tuple[float, str]]:
        out = [(float(e), a) for a in self.adversaries for e in self.eps]
        for item in self.extra:
            e, _, a = item.partition("/")
            out.append((float(e), a or "weak"))
        return list(dict.fromkeys(out))

    def recipe(self) -> dict:
        """Fields every RecNet of the sweep shares: its depth, or with depth 0 the cloud's strong recipe."""
        if self.recnet_depth:
            return {"depth": self.recnet_depth}
        strong = STRONG_EXTNET_CLOUD
        return {"depth": 0, "init": strong.init, "lr": strong.lr, "head_init": strong.head_init}

    @property
    def adversary_depth(self) -> int:
        """Stage 1's adversaries (trained alongside the encoder, not by :func:`fit_recnet`) need a block."""
        return max(1, self.recnet_depth)

    def attack(self) -> AttackRecNetConfig:
        return AttackRecNetConfig(epochs=self.attack_epochs, seed=self.seed, **self.recipe())

    def distill(self, epochs: int, kd_weight: float = 0.3) -> DistillConfig:
        return DistillConfig(epochs=epochs, kd_weight=kd_weight, seed=self.seed, **self.recipe())


def layer_norm(tokens: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters: FG's clean feature from raw ExtNet tokens."""
    return F.layer_norm(tokens.float(), tokens.shape[-1:])


@torch.no_grad()
def noised(encoder: TokenNoiseEncoder | None, clean: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """FG's output from clean (LayerNorm'd) tokens, ``clean + encoder(clean)``; the baseline for ``None``."""
    if encoder is None:
        return clean
    encoder.eval()
    return torch.cat([c + encoder(c) for c in clean.split(batch_size)]) if len(clean) else clean


# ---- known-plaintext with an honest fit -------------------------------------------------------------------------

# fit_denoiser / apply_denoiser: the known-plaintext de-noiser, an attack (veil.attacks.denoiser)


# ---- one measured point -----------------------------------------------------------------------------------------

def rate_dict(leak: LeakageResult) -> dict:
    return leak.as_dict()


def not_determined(why: str) -> dict:
    return {"rate": None, "determined": False, "note": why}


@dataclass
class Shared:
    """What every setting reuses: the owner's tokens, the teacher and the adversaries' clean-token recognisers."""

    train: TokenGroup
    test: TokenGroup
    aux: TokenGroup
    gallery_seed: int
    teacher_logits: torch.Tensor
    teacher: RecNet
    transfer: RecNet
    expectation: dict[float, RecNet] = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def prepare_shared(train: TokenGroup, test: TokenGroup, aux: TokenGroup, cfg: SweepConfig, gallery_seed: int,
                   device: torch.device, show_progress: bool, log: Callable[[str], None] = print) -> Shared:
    t = time.time()
    clean_train = layer_norm(train.tokens)
    teacher, head, ht = train_teacher(clean_train, train.labels, cfg.distill(cfg.teacher_epochs, 0.0),
                                      device, show_progress)
    logits = teacher_logits(teacher, head, clean_train)
    seconds = {"teacher": time.time() - t}
    log(f"teacher: {seconds['teacher']:.0f}s, final loss {ht['loss'][-1]:.3f}")
    t = time.time()
    transfer = fit_recnet(layer_norm(aux.tokens), aux.labels, cfg.attack(), None, device)
    seconds["transfer"] = time.time() - t
    log(f"transfer recogniser (clean public aux tokens): {seconds['transfer']:.0f}s")
    return Shared(train, test, aux, gallery_seed, logits, teacher, transfer, {}, seconds)


def expectation_recnet(shared: Shared, eps: float, cfg: SweepConfig, device: torch.device) -> RecNet:
    """A RecNet on public aux tokens + fresh random noise of the public bound ``eps`` each batch (one per eps)."""
    if eps not in shared.expectation:
        gen = torch.Generator().manual_seed(cfg.seed)
        _, n_tok, dim = shared.aux.tokens.shape
        transform = registry.get("noise").random(registry.Geometry(n_tok, dim, 0), gen, eps=eps)
        shared.expectation[eps] = fit_recnet(shared.aux.tokens, shared.aux.labels, cfg.attack(), transform, device)
    return shared.expectation[eps]


def measure(shared: Shared, encoder: TokenNoiseEncoder | None, server: RecNet, cfg: SweepConfig,
            device: torch.device, eps: float, log: Callable[[str], None] = print) -> dict:
    """Utility and every attack for one FG (``encoder=None``: the baseline) and its server RecNet."""
    t0 = time.time()
    test_feats = noised(encoder, layer_norm(shared.test.tokens))
    target = Target.from_features(test_feats, shared.test.labels, shared.gallery_seed)
    out: dict = {"utility": rate_dict(identity_leakage(target, recnet_embedder(server)))}
    # black-box: FG's answers to the adversary's queries (its own aux images), a curve over nested budgets
    aux_feats = noised(encoder, layer_norm(shared.aux.tokens))
    attack = BlackBoxAttack(cfg.attack(), flip=False, seed=cfg.seed, device=device)
    sizes = sorted({b for b in cfg.budgets if b < len(aux_feats)} | {len(aux_feats)})
    curve = [attack.point(aux_feats, None, shared.aux.labels, target, n).as_dict() for n in sizes]
    out["black_box"] = {**curve[-1], "curve": curve}
    out["transfer"] = rate_dict(identity_leakage(target, recnet_embedder(shared.transfer)))
    exp = expectation_recnet(shared, eps, cfg, device) if eps > 0 else shared.transfer
    out["expectation"] = {**rate_dict(identity_leakage(target, recnet_embedder(exp))), "eps": eps}
    # known-plaintext: k leaked (clean, noised) pairs of owner training images, ridge de-noiser, transfer RecNet
    order = torch.randperm(len(shared.train), generator=torch.Generator().manual_seed(cfg.seed + 1))
    points = []
    for k in sorted(cfg.ks):
        idx = order[:k]
        clean_k = layer_norm(shared.train.tokens[idx])
        fit = fit_denoiser(clean_k, noised(encoder, clean_k), cfg.seed)
        info = {"k": k, "ols_determined": fit.ols_determined, "lambda": fit.lam,
                "heldout_residual": fit.heldout_residual}
        if fit.weight is None:
            points.append({**info, **not_determined(fit.note)})
            continue
        inverted = Target(apply_denoiser(fit.weight, test_feats), target.labels, target.gallery, target.probe)
        points.append({**info, "determined": True,
                       **rate_dict(identity_leakage(inverted, recnet_embedder(shared.transfer)))})
    determined = [p for p in points if p["determined"]]
    out["known_plaintext"] = {**(determined[-1] if determined else not_determined("no k determined")),
                              "curve": points}
    rates = {a: out[a]["rate"] for a in ATTACKS if out[a].get("rate") is not None}
    strongest = max(rates, key=rates.__getitem__)
    out["strongest_attack"] = {"attack": strongest, **{k: out[strongest][k] for k in ("rate", "ci95", "n", "hits")}}
    out["chance"] = target.chance
    out["seconds_attacks"] = time.time() - t0
    log(f"  utility {100 * out['utility']['rate']:.2f}%; ASR black-box {100 * rates['black_box']:.2f}%, "
        f"transfer {100 * rates['transfer']:.2f}%, expectation {100 * rates['expectation']:.2f}%, "
        f"known-plaintext {100 * rates.get('known_plaintext', math.nan):.2f}%")
    return out


def run_setting(shared: Shared, eps: float, adversary: str, cfg: SweepConfig, device: torch.device,
                show_progress: bool, log: Callable[[str], None] = print) -> tuple[dict, TokenNoiseEncoder, RecNet]:
    """Stage 1 (token encoder vs the adversary of that strength), distillation, then :func:`measure`."""
    t = time.time()
    clean_train = layer_norm(shared.train.tokens)
    acfg = adversarial_config(eps, adversary, cfg.stage1_epochs, len(clean_train), seed=cfg.seed,
                              encoder_depth=cfg.encoder_depth, adversary_depth=cfg.adversary_depth)
    encoder, h1 = train_token_noise_encoder(clean_train, shared.train.labels, acfg, device, show_progress)
    s1 = time.time() - t
    log(f"eps {eps} / {adversary}: stage 1 {s1:.0f}s, best adversary CE {h1['adversary_ce'][0]:.2f} -> "
        f"{h1['adversary_ce'][-1]:.2f} (chance {h1['chance_ce']:.2f}), train acc {h1['adversary_acc'][-1]:.3f}")
    t = time.time()
    server, hs = distill_server(noised(encoder, clean_train), shared.train.labels, shared.teacher_logits,
                                cfg.distill(cfg.student_epochs), device, show_progress)
    s2 = time.time() - t
    m = measure(shared, encoder, server, cfg, device, eps, log)
    m.update({"eps": eps, "adversary": adversary, "adversarial_config": asdict(acfg),
              "stage1": {k: h1[k] for k in ("adversary_ce", "adversary_acc", "encoder_loss", "chance_ce", "reinits")},
              "student_kl": hs["kl"], "seconds": {"stage1": s1, "distill": s2, "attacks": m["seconds_attacks"]}})
    return m, encoder, server


def curve_row(m: dict) -> dict:
    """One entry of ``table4.json``'s ``curve``: the setting and the five headline rates."""
    def r(key: str) -> float | None:
        return m[key].get("rate")

    return {"eps": m.get("eps", 0.0), "adversary": m.get("adversary", "none"), "utility": r("utility"),
            "asr_black_box": r("black_box"), "asr_transfer": r("transfer"), "asr_expectation": r("expectation"),
            "asr_known_plaintext": r("known_plaintext"), "asr_strongest": m["strongest_attack"]["rate"],
            "strongest_attack": m["strongest_attack"]["attack"], "n": m["utility"]["n"], "chance": m["chance"]}


def verdict(baseline: dict, points: list[dict], asr_factor: float = 0.5, utility_factor: float = 0.9) -> dict:
    """Is there a setting with strongest-attack ASR <= 0.5 x baseline's at utility >= 0.9 x baseline's?

    Point estimates decide; the closest point minimises max(ASR / ASR bound, utility bound / utility),
    which is <= 1 exactly when a setting meets both targets.
    """
    asr_bound = asr_factor * baseline["strongest_attack"]["rate"]
    util_bound = utility_factor * baseline["utility"]["rate"]

    def score(m: dict) -> float:
        u = m["utility"]["rate"]
        return max(m["strongest_attack"]["rate"] / asr_bound if asr_bound else math.inf,
                   util_bound / u if u else math.inf)

    met = [m for m in points if score(m) <= 1.0]
    best = min(points, key=score) if points else None
    pick = min(met, key=lambda m: m["strongest_attack"]["rate"]) if met else best
    out = {"met": bool(met), "asr_bound": asr_bound, "utility_bound": util_bound,
           "baseline_strongest_asr": baseline["strongest_attack"]["rate"],
           "baseline_utility": baseline["utility"]["rate"], "settings_meeting": len(met)}
    if pick is not None:
        out.update({"setting": {"eps": pick["eps"], "adversary": pick["adversary"]},
                    "utility": pick["utility"]["rate"], "strongest_asr": pick["strongest_attack"]["rate"],
                    "strongest_attack": pick["strongest_attack"]["attack"], "score": score(pick)})
    return out
