"""Input reconstruction from the exposed feature map: a c-GAN (seed 002) and a plain regression decoder.

:class:`ReconstructionAttack` is the attack behind the common contract (:mod:`veil.attacks.base`):
parameters checked up front, ``on(view)`` returning SSIM and PSNR means over the victims with n, their
95% intervals and the prior's values. ``reconstruction_attack`` is the function it runs (also what the
partition planner calls; ``veil.partition.attack`` re-exports this module's names).

Threat model: the adversary controls the untrusted side, so it sees the victim's exposed feature maps; it holds
auxiliary images of *other* people (identities disjoint from the victim's) and may query the trusted partition
as a black box (submit an image, observe the feature map) to build (feature map, image) training pairs. It never
sees the victim's images: those are used only to score its reconstructions (SSIM, PSNR from torchmetrics).

The c-GAN follows pix2pix: the generator maps a feature map to an image, the discriminator judges an image
*conditioned on* the feature map, and the generator's loss is adversarial + ``l1_weight`` x L1. The regression
decoder is the same generator trained on MSE alone: a weaker baseline, and a second opinion (a c-GAN that fails
is weak evidence of privacy; see PRIOR_ART.md).

Budgets that converge (issue 22): ``epochs`` is the most epochs; with ``plateau`` the training stops once an
epoch lowered the mean training loss by less than that fraction of the epoch before's (the same rule the
planner uses to call a learned attack converged), and ``max_seconds`` stops it at a time budget, when it may
still be improving: the caller then reports its figures as not determined. ``size`` trains the decoder to a
smaller output side (a CPU budget: a 150 px decoder step costs 3-6 s on one core, a 75 px one 0.6-3.4 s); its
reconstructions are brought back to the victims' side (bilinear) before they are scored or identified, so they
compare with the other attacks' and the prior's at the same resolution.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, Measure, View
from veil.errors import VeilError

KINDS = ("cgan", "regression")
PLATEAU = 0.02  # a learned decoder converged when its last epoch lowered its loss by less than 2%


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Generator(nn.Module):
    """Feature map (C, h, w) -> image (3, S, S) in [0, 1]: 1x1 projection, x2 upsampling stages, refinement."""

    def __init__(self, feature_shape: tuple[int, int, int], image_size: int, width: int = 128):
        super().__init__()
        c, h, _w = feature_shape
        self.image_size = image_size
        ups = max(0, round(math.log2(image_size / h))) if h < image_size else 0
        layers: list[nn.Module] = [nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        ch = width
        for _ in range(ups):
            nxt = max(32, ch // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _block(ch, nxt)]
            ch = nxt
        layers += [_block(ch, ch), nn.Conv2d(ch, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        y = self.net(f)
        if y.shape[-1] != self.image_size:
            y = F.interpolate(y, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


class Discriminator(nn.Module):
    """Real/fake logit for an image *conditioned on* its feature map (both brought to the map's resolution)."""

    def __init__(self, feature_shape: tuple[int, int, int], image_size: int, width: int = 64):
        super().__init__()
        c, h, w = feature_shape
        downs = max(0, round(math.log2(image_size / h))) if h < image_size else 0
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(downs):
            layers += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.image = nn.Sequential(*layers)
        self.size = (h, w)
        self.cond = nn.Sequential(nn.Conv2d(c, width, 1), nn.LeakyReLU(0.2, inplace=True))
        self.head = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(width, 1, 1))

    def forward(self, img: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        a = F.adaptive_avg_pool2d(self.image(img), self.size)
        return self.head(torch.cat([a, self.cond(f)], dim=1)).mean(dim=(1, 2, 3))


@dataclass
class ReconstructionResult:
    """Per-image SSIM and PSNR of the reconstructions of ``n`` victim images, with summaries."""

    kind: str
    ssim: np.ndarray
    psnr: np.ndarray
    samples: torch.Tensor  # the first reconstructions, (k, 3, S, S) in [0, 1], for the grid
    train_seconds: float
    aux_images: int
    epochs: int
    feature_shape: tuple[int, ...]
    history: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ssim)

    def summary(self) -> dict:
        def stat(v: np.ndarray) -> dict:
            m = Measure.of("", v)
            return {"mean": m.mean, "ci95": list(m.ci95), "std": m.std}

        return {"attack": self.kind, "n": self.n, "ssim": stat(self.ssim), "psnr_db": stat(self.psnr),
                "aux_images": self.aux_images, "epochs": self.epochs, "train_seconds": self.train_seconds,
                "feature_shape": list(self.feature_shape), "loss_curve": [float(v) for v in self.history],
                "ci": "normal approximation over victim images"}


def plateaued(curve: list[float], window: int, tol: float) -> bool:
    """True when the last ``window`` losses' mean fell by less than ``tol`` (relative) from the window before."""
    if len(curve) < 2 * window:
        return False
    prev, cur = np.mean(curve[-2 * window:-window]), np.mean(curve[-window:])
    return bool(prev - cur < tol * abs(prev))


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def query(enclave: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
          preprocess: Callable[[torch.Tensor], torch.Tensor], batch: int = 128) -> torch.Tensor:
    """Black-box queries: feature maps of ``images`` as the trusted partition returns them."""
    return torch.cat([enclave(preprocess(images[i:i + batch])).float() for i in range(0, len(images), batch)])


def reconstruction_attack(enclave: Callable[[torch.Tensor], torch.Tensor], aux_images: torch.Tensor,
                          victim_features: torch.Tensor, victim_images: torch.Tensor,
                          preprocess: Callable[[torch.Tensor], torch.Tensor], kind: str = "cgan", epochs: int = 8,
                          batch_size: int = 32, lr: float = 1e-3, d_lr: float = 2e-4, l1_weight: float = 100.0,
                          seed: int = 0,
                          keep: int = 8, aux_features: torch.Tensor | None = None,
                          on_epoch: Callable[[int, float], None] | None = None, plateau: float | None = None,
                          max_seconds: float | None = None, size: int | None = None,
                          min_epochs: int = 3) -> ReconstructionResult:
    """Train a reconstructor on (query(aux), aux) pairs, then reconstruct the victim from its exposed features.

    ``enclave`` is the black box (any callable: an :class:`~veil.partition.enclave.Enclave` works).
    ``aux_images``/``victim_images``: uint8 (n, 3, S, S) or float in [0, 1]. ``victim_features`` are what the
    untrusted side saw; ``victim_images`` only score the result. ``aux_features`` skips the queries if the caller
    already made them (the planner shares them between the two attacks). ``plateau``, ``max_seconds`` and
    ``size``: see the module's docstring (``min_epochs`` epochs run before a plateau may stop the training).
    """
    if kind not in KINDS:
        raise VeilError(f"attack kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if victim_features.ndim != 4:
        raise VeilError(f"reconstruction needs a spatial feature map (n, C, h, w); got shape "
                        f"{tuple(victim_features.shape)} (split after global pooling exposes no image-like map)")
    if len(aux_images) < batch_size:
        raise VeilError(f"need at least {batch_size} auxiliary images, got {len(aux_images)}")
    torch.manual_seed(seed)
    aux = _to_unit(aux_images)
    victims = _to_unit(victim_images)
    native = aux.shape[-1]
    size = size or native
    if size != native:
        aux = F.interpolate(aux, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    feats = aux_features if aux_features is not None else query(enclave, aux_images, preprocess)
    mean = feats.mean(dim=(0, 2, 3), keepdim=True)
    std = feats.std(dim=(0, 2, 3), keepdim=True) + 1e-5  # the adversary normalises with its own aux statistics
    feats = (feats - mean) / std
    c, h, w = (int(s) for s in feats.shape[1:])
    gen = Generator((c, h, w), size)
    disc = Discriminator((c, h, w), size) if kind == "cgan" else None
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=d_lr, betas=(0.5, 0.999)) if disc is not None else None
    bce = nn.BCEWithLogitsLoss()
    g = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        gen.train()
        order = torch.randperm(len(aux), generator=g)
        total, steps = 0.0, 0
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            f, x = feats[idx], aux[idx]
            fake = gen(f)
            if disc is not None and opt_d is not None:
                opt_d.zero_grad()
                d_loss = bce(disc(x, f), torch.ones(len(x))) + bce(disc(fake.detach(), f), torch.zeros(len(x)))
                d_loss.backward()
                opt_d.step()
                opt_g.zero_grad()
                rec = F.l1_loss(fake, x)
                g_loss = bce(disc(fake, f), torch.ones(len(x))) + l1_weight * rec
            else:
                opt_g.zero_grad()
                rec = F.mse_loss(fake, x)
                g_loss = rec
            g_loss.backward()
            opt_g.step()
            total += float(rec.detach())
            steps += 1
        history.append(total / max(steps, 1))
        if on_epoch:
            on_epoch(epoch + 1, history[-1])
        if plateau is not None and len(history) >= min_epochs and plateaued(history, 1, plateau):
            break
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            break
    train_s = time.perf_counter() - t0
    gen.eval()
    with torch.no_grad():
        vf = (victim_features.float() - mean) / std
        recon = torch.cat([gen(vf[i:i + 128]) for i in range(0, len(vf), 128)])
        if recon.shape[-1] != native:
            recon = F.interpolate(recon, size=(native, native), mode="bilinear", align_corners=False).clamp(0, 1)
    target = victims
    if target.shape[-1] != recon.shape[-1]:
        target = F.interpolate(target, size=recon.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    ssim = structural_similarity_index_measure(recon, target, data_range=1.0, reduction="none")
    assert isinstance(ssim, torch.Tensor)  # a tuple only with return_full_image
    psnr = peak_signal_noise_ratio(recon, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return ReconstructionResult(kind, ssim.numpy(), psnr.numpy(), recon[:keep].clone(), train_s, len(aux),
                                len(history), tuple(victim_features.shape[1:]), history)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@torch.no_grad()
def prior_scores(aux_images: torch.Tensor, victim_images: torch.Tensor,
                 size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-victim SSIM and PSNR of the adversary's mean auxiliary image: what it gets without any features.

    ``size``: the side the reconstructions have (the victims are resized to it as the attack scores them).
    """
    victims = _to_unit(victim_images)
    if size is not None and victims.shape[-1] != size:
        victims = F.interpolate(victims, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = _to_unit(aux_images).mean(0, keepdim=True)
    if mean.shape[-1] != victims.shape[-1]:
        mean = F.interpolate(mean, size=victims.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    mean = mean.expand_as(victims).contiguous()
    ssim = structural_similarity_index_measure(mean, victims, data_range=1.0, reduction="none")
    assert isinstance(ssim, torch.Tensor)  # a tuple only with return_full_image
    psnr = peak_signal_noise_ratio(mean, victims, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return ssim.numpy(), psnr.numpy()


class ReconstructionAttack(Attack):
    """Fit a decoder (c-GAN or regression) on queried (feature map, image) pairs; reconstruct the victims.

    ``kind``: ``cgan`` (pix2pix: adversarial + ``l1_weight`` x L1) or ``regression`` (MSE). The result's
    measures are SSIM and PSNR (dB) over the victims; each measure's ``baseline`` is the adversary's mean
    auxiliary image scored the same way (no features used).
    """

    name = "reconstruction"
    holdings = ("black-box queries to the trusted partition: image -> exposed feature map (query)",
                "its own auxiliary images of other persons (aux_images)",
                "the victims' exposed feature maps (exposed)")
    reports = "input reconstruction: SSIM and PSNR means over victims, n, 95% CI, mean-image baseline"

    def __init__(self, kind: str = "cgan", epochs: int = 8, batch_size: int = 32, lr: float = 1e-3,
                 d_lr: float = 2e-4, l1_weight: float = 100.0, seed: int = 0, keep: int = 8,
                 plateau: float | None = None, max_seconds: float | None = None, size: int | None = None) -> None:
        self.kind = params.choice("kind", kind, KINDS)
        self.epochs = params.positive_int("epochs", epochs)
        self.batch_size = params.positive_int("batch_size", batch_size)
        self.lr = params.positive_float("lr", lr)
        self.d_lr = params.positive_float("d_lr", d_lr)
        self.l1_weight = params.non_negative_float("l1_weight", l1_weight)
        self.seed = params.non_negative_int("seed", seed)
        self.keep = params.non_negative_int("keep", keep)
        self.plateau = None if plateau is None else params.positive_float("plateau", plateau)
        self.max_seconds = None if max_seconds is None else params.positive_float("max_seconds", max_seconds)
        self.size = None if size is None else params.positive_int("size", size)

    def run(self, enclave: Callable[[torch.Tensor], torch.Tensor], aux_images: torch.Tensor,
            victim_features: torch.Tensor, victim_images: torch.Tensor,
            preprocess: Callable[[torch.Tensor], torch.Tensor] = _identity, aux_features: torch.Tensor | None = None,
            on_epoch: Callable[[int, float], None] | None = None) -> ReconstructionResult:
        """:func:`reconstruction_attack` with this attack's parameters."""
        return reconstruction_attack(enclave, aux_images, victim_features, victim_images, preprocess, kind=self.kind,
                                     epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, d_lr=self.d_lr,
                                     l1_weight=self.l1_weight, seed=self.seed, keep=self.keep,
                                     aux_features=aux_features, on_epoch=on_epoch, plateau=self.plateau,
                                     max_seconds=self.max_seconds, size=self.size)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        enclave, aux, exposed, truth = view.need("query", "aux_images", "exposed", "truth")
        r = self.run(enclave, aux, exposed, truth)
        prior_ssim, prior_psnr = prior_scores(aux, truth, aux.shape[-1])
        measures = {"ssim": Measure.of("SSIM of reconstruction vs victim image", r.ssim, float(prior_ssim.mean())),
                    "psnr_db": Measure.of("PSNR (dB) of reconstruction vs victim image", r.psnr,
                                          float(prior_psnr.mean()))}
        return self.measured(measures, command, r, kind=r.kind, aux_images=r.aux_images, epochs=r.epochs,
                             loss_curve=[float(v) for v in r.history],
                             converged=plateaued(r.history, 1, self.plateau or PLATEAU),
                             train_seconds=r.train_seconds, feature_shape=list(r.feature_shape),
                             baseline="adversary's mean auxiliary image, no features used",
                             ci="normal approximation over victim images")
