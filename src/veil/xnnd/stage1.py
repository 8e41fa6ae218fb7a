"""Stage 1 (paper 4.1): train the noise encoder against an adversary recogniser trained alongside it.

Each step: (a) the adversary (a RecNet + CosFace head over the training identities, the
eavesdropper's stand-in) takes ``adversary_steps`` steps of CosFace cross-entropy on the current
noised features, detached; (b) the encoder takes one step on
``adv_weight * max(0, log C - CE(adversary(clean + noise), y))``: it pushes the adversary's loss
up until the adversary is no better than chance (the authors' ``loss_G = -CE``, capped so that the
encoder stops spending its bounded noise once recognition is already at chance). The noise bound
(per-token RMS ``eps``, see :mod:`veil.xnnd.generator`) is what keeps the features usable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from veil.errors import VeilError
from veil.models.recnet import RecNetArch, build_recnet
from veil.train.progress import progress_bar
from veil.xnnd.config import AdversarialConfig
from veil.xnnd.features import generate
from veil.xnnd.generator import FeatureGenerator, NoiseEncoder
from veil.xnnd.heads import CosineHead
from veil.xnnd.token_noise import TokenEncoderConfig, TokenNoiseEncoder


def _seeded(cfg: AdversarialConfig, device: torch.device | str,
            labels: torch.Tensor) -> tuple[torch.device, torch.Tensor, int]:
    """Seed the global RNG (weights drawn next); the device, the labels as long, the number of identities."""
    torch.manual_seed(cfg.seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    return torch.device(device), labels, int(labels.max()) + 1


def _adversary(n_tok: int, dim: int, classes: int, cfg: AdversarialConfig,
               device: torch.device) -> tuple[torch.nn.Module, CosineHead, torch.optim.Optimizer]:
    """A fresh adversary recogniser (RecNet + CosFace head over the training identities) and its optimiser."""
    adv = build_recnet(n_tok, dim, RecNetArch(cfg.adversary_dim, cfg.adversary_depth, 4, 128)).to(device).train()
    head = CosineHead(128, classes, cfg.scale, cfg.margin).to(device)
    opt = torch.optim.AdamW(list(adv.parameters()) + list(head.parameters()), lr=cfg.adversary_lr,
                            weight_decay=cfg.weight_decay)
    return adv, head, opt


def _train(encoder: torch.nn.Module, n: int, cfg: AdversarialConfig, gen: torch.Generator, history: dict,
           title: str, show_progress: bool,
           step: Callable[[torch.Tensor], tuple[float, float, float]]) -> tuple[Any, dict]:
    """The loop both encoders share: ``cfg.epochs`` passes over ``n`` rows in batches drawn with ``gen``;
    ``step(idx)`` trains on one batch and returns the adversary's CE and accuracy and the encoder's loss,
    averaged per epoch into ``history``. Returns the encoder, frozen, on the CPU, and ``history``."""
    steps = n // cfg.batch_size
    start = time.time()
    with progress_bar(show_progress) as bar:
        task = bar.add_task(title, total=cfg.epochs * steps, status="")
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            sums = {"ce": 0.0, "acc": 0.0, "enc": 0.0}
            for s in range(steps):
                ce, acc, enc = step(order[s * cfg.batch_size:(s + 1) * cfg.batch_size])
                sums["ce"] += ce
                sums["acc"] += acc
                sums["enc"] += enc
                bar.update(task, advance=1, status=f"epoch {epoch + 1} adversary CE {sums['ce'] / (s + 1):.2f}")
            history["adversary_ce"].append(sums["ce"] / steps)
            history["adversary_acc"].append(sums["acc"] / steps)
            history["encoder_loss"].append(sums["enc"] / steps)
    history["seconds"] = time.time() - start
    encoder = encoder.cpu().eval()
    encoder.requires_grad_(False)
    return encoder, history


def _history(cfg: AdversarialConfig, chance_ce: float, classes: int, **extra: int) -> dict:
    return {"config": asdict(cfg), "adversary_ce": [], "adversary_acc": [], "encoder_loss": [],
            "chance_ce": chance_ce, "classes": classes, **extra}


def train_noise_encoder(fg: FeatureGenerator, images: torch.Tensor, labels: torch.Tensor,
                        cfg: AdversarialConfig | None = None, device: torch.device | str = "cpu",
                        show_progress: bool = True) -> tuple[NoiseEncoder, dict]:
    """A trained noise encoder for ``fg``'s ExtNet, from the owner's training images (uint8) and labels."""
    cfg = cfg or AdversarialConfig()
    if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
        raise VeilError(f"images must be uint8 (n, 3, H, W) with n labels, got {tuple(images.shape)} "
                        f"{images.dtype} and {len(labels)} labels")
    if len(images) < cfg.batch_size:
        raise VeilError(f"{len(images)} training images, fewer than one batch of {cfg.batch_size}")
    device, labels, classes = _seeded(cfg, device, labels)
    clean = {False: generate(fg, images, clean=True, device=device),
             True: generate(fg, images, flip=True, clean=True, device=device)}
    n_tok, dim = fg.token_shape
    encoder = NoiseEncoder(fg.ext, cfg.eps).to(device).train()
    adversary, head, opt_a = _adversary(n_tok, dim, classes, cfg, device)
    opt_e = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=cfg.encoder_lr,
                              weight_decay=cfg.weight_decay)
    chance_ce = math.log(classes)
    gen = torch.Generator().manual_seed(cfg.seed)

    def step(idx: torch.Tensor) -> tuple[float, float, float]:
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = images[idx]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(device)
        c = torch.where(flip.view(-1, 1, 1), clean[True][idx], clean[False][idx]).to(device)
        y = labels[idx].to(device)
        noised = c + encoder(x)
        for _ in range(cfg.adversary_steps):
            loss_a = head.margin_loss(adversary(noised.detach()), y)
            opt_a.zero_grad(set_to_none=True)
            loss_a.backward()
            opt_a.step()
        logits = head.logits(adversary(noised))
        ce = F.cross_entropy(logits, y)
        loss_e = cfg.adv_weight * F.relu(chance_ce - ce)
        opt_e.zero_grad(set_to_none=True)
        opt_a.zero_grad(set_to_none=True)
        loss_e.backward()
        opt_e.step()
        return ce.item(), (logits.argmax(1) == y).float().mean().item(), loss_e.item()

    return _train(encoder, len(images), cfg, gen, _history(cfg, chance_ce, classes, images=len(images)),
                  "xnnd stage 1: adversarial noise", show_progress, step)


def train_token_noise_encoder(clean: torch.Tensor, labels: torch.Tensor, cfg: AdversarialConfig | None = None,
                              device: torch.device | str = "cpu", show_progress: bool = True,
                              flipped: torch.Tensor | None = None) -> tuple[TokenNoiseEncoder, dict]:
    """Stage 1 on cached tokens: a :class:`TokenNoiseEncoder` against a pool of adversaries.

    ``clean``: the owner's training features LayerNorm(ExtNet(x)) (n, N, D); ``flipped`` the same of
    the mirrored images (used as random augmentation when given). Each batch: every adversary of the
    pool takes ``adversary_steps`` CosFace steps on the detached noised features, then the encoder
    takes one step on the mean over the pool of ``adv_weight * max(0, log C - CE)``. Every
    ``reinit_every`` encoder steps the next adversary of the pool starts again from random weights.
    """
    cfg = cfg or AdversarialConfig(encoder="tokens")
    if clean.ndim != 3 or len(clean) != len(labels):
        raise VeilError(f"clean tokens must be (n, N, D) with n labels, got {tuple(clean.shape)}, {len(labels)}")
    if len(clean) < cfg.batch_size:
        raise VeilError(f"{len(clean)} training rows, fewer than one batch of {cfg.batch_size}")
    device, labels, classes = _seeded(cfg, device, labels)
    n_tok, dim = clean.shape[1:]
    encoder = TokenNoiseEncoder(TokenEncoderConfig(n_tok, dim, cfg.encoder_depth), cfg.eps).to(device).train()
    pool = [_adversary(n_tok, dim, classes, cfg, device) for _ in range(cfg.adversary_pool)]
    opt_e = torch.optim.AdamW(encoder.parameters(), lr=cfg.encoder_lr, weight_decay=cfg.weight_decay)
    chance_ce = math.log(classes)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = _history(cfg, chance_ce, classes, rows=len(clean), reinits=0)
    done = 0  # encoder steps so far

    def step(idx: torch.Tensor) -> tuple[float, float, float]:
        nonlocal done
        c = clean[idx]
        if flipped is not None:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            c = torch.where(flip.view(-1, 1, 1), flipped[idx], c)
        c, y = c.to(device).float(), labels[idx].to(device)
        noised = c + encoder(c)
        for adv, head, opt in pool:
            for _ in range(cfg.adversary_steps):
                loss_a = head.margin_loss(adv(noised.detach()), y)
                opt.zero_grad(set_to_none=True)
                loss_a.backward()
                opt.step()
        ces, accs = [], []
        for adv, head, _ in pool:
            logits = head.logits(adv(noised))
            ces.append(F.cross_entropy(logits, y))
            accs.append((logits.argmax(1) == y).float().mean().item())
        loss_e = cfg.adv_weight * torch.stack([F.relu(chance_ce - ce) for ce in ces]).mean()
        opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        opt_e.step()
        done += 1
        if cfg.reinit_every and done % cfg.reinit_every == 0:
            pool[(done // cfg.reinit_every) % len(pool)] = _adversary(n_tok, dim, classes, cfg, device)
            history["reinits"] += 1
        # the pool's best adversary, batch by batch
        return min(ce.item() for ce in ces), max(accs), loss_e.item()

    return _train(encoder, len(clean), cfg, gen, history, "xnnd stage 1 (token encoder)", show_progress, step)
