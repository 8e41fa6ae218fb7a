"""White-box inversion of an exposed feature map under public weights (He et al. 2019, "Model inversion attacks
against collaborative inference", the white-box attack, regularised maximum likelihood).

Invariant exploited (``docs/attacks.md``, layer partitioning): the trusted part's weights are *public* (dlib's
face ResNet is public domain), so the untrusted side can run and differentiate the trusted part itself. It
optimises an input image ``x`` so that ``head(x)`` reproduces the victim's exposed map, with a total-variation
prior, starting from the public mean face (the mean of its own auxiliary images of other persons):

    min_x  ||head(x) - e||^2 / ||e||^2  +  tv * TV(x),   x in [0, 1]   (Adam, projected onto [0, 1])

Budgets that converge: the loss curve (mean over victims) is recorded every step and checked every
``check_every`` steps; the run stops when the window's mean fell by less than ``plateau`` (relative) from the
previous window's: **converged**. A run that reaches ``max_steps`` while still falling is *not converged*,
and its figures are "not determined" (``details["converged"] = False``); they must not be read as privacy.

No training, no queries: only the weights and the exposed maps. The victims' images only score the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from veil.attacks import params
from veil.attacks.base import Attack, AttackResult, Measure, View
from veil.attacks.reconstruction import plateaued, prior_scores


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image (n,)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return dh + dw


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@dataclass
class InversionResult:
    """Reconstructions of ``n`` victims, their SSIM/PSNR, the loss curve and whether it reached a plateau."""

    reconstructions: torch.Tensor  # (n, 3, S, S) in [0, 1]
    ssim: np.ndarray
    psnr: np.ndarray
    loss_curve: list[float]  # mean loss over victims, every step
    converged: bool
    steps: int
    seconds: float
    config: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ssim)

    @property
    def samples(self) -> torch.Tensor:
        """Every reconstruction (the name the partition report reads for its grid)."""
        return self.reconstructions

    def summary(self) -> dict:
        def stat(v: np.ndarray) -> dict:
            m = Measure.of("", v)
            return {"mean": m.mean, "ci95": list(m.ci95), "std": m.std}

        return {"attack": "white_box", "n": self.n, "ssim": stat(self.ssim), "psnr_db": stat(self.psnr),
                "converged": self.converged, "steps": self.steps, "seconds": self.seconds,
                "loss_first": self.loss_curve[0] if self.loss_curve else None,
                "loss_last": self.loss_curve[-1] if self.loss_curve else None,
                "loss_curve": self.loss_curve[::max(1, len(self.loss_curve) // 50)], **self.config,
                "ci": "normal approximation over victim images"}


class WhiteBoxInversionAttack(Attack):
    """Invert exposed maps through the public weights of the trusted part, TV prior, from the public mean face."""

    name = "white_box_inversion"
    title = "white-box inversion (public weights)"
    label = "white-box inversion"
    holdings = ("the public weights of the trusted part (public_head: image in [0, 1] -> exposed map)",
                "its own auxiliary images of other persons (aux_images): the mean face it starts from",
                "the victims' exposed feature maps (exposed)")
    reports = ("input reconstruction: SSIM and PSNR means over victims, n, 95% CI, mean-image baseline; "
               "converged flag (not converged = not determined)")

    def __init__(self, public_head: Callable[[torch.Tensor], torch.Tensor], tv: float = 0.05, lr: float = 0.03,
                 max_steps: int = 600, check_every: int = 25, plateau: float = 0.01, batch: int = 32,
                 seed: int = 0) -> None:
        if not callable(public_head):
            raise params.AttackParameterError("public_head", "public_head must map images to exposed maps")
        self.head = public_head
        self.tv = params.non_negative_float("tv", tv)
        self.lr = params.positive_float("lr", lr)
        self.max_steps = params.positive_int("max_steps", max_steps)
        self.check_every = params.positive_int("check_every", check_every)
        self.plateau = params.non_negative_float("plateau", plateau)
        self.batch = params.positive_int("batch", batch)
        self.seed = params.non_negative_int("seed", seed)

    def config(self) -> dict:
        return {"tv": self.tv, "lr": self.lr, "max_steps": self.max_steps, "check_every": self.check_every,
                "plateau": self.plateau, "start": "mean of the adversary's auxiliary images"}

    def invert(self, exposed: torch.Tensor, start: torch.Tensor,
               log: Callable[[str], None] | None = None) -> tuple[torch.Tensor, list[float], bool, int]:
        """Optimise one batch; returns (images, mean loss per step, converged, steps)."""
        torch.manual_seed(self.seed)
        target = exposed.float()
        scale = target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        x = start.expand(len(target), *start.shape[1:]).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=self.lr)
        curve: list[float] = []
        converged = False
        for step in range(self.max_steps):
            opt.zero_grad(set_to_none=True)
            fit = (self.head(x) - target).flatten(1).pow(2).sum(1) / scale
            loss = fit + self.tv * total_variation(x)
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            curve.append(float(loss.detach().mean()))
            if (step + 1) % self.check_every == 0:
                if log:
                    log(f"white-box step {step + 1}: loss {curve[-1]:.4f}")
                if plateaued(curve, self.check_every, self.plateau):
                    converged = True
                    break
        return x.detach(), curve, converged, len(curve)

    def run(self, exposed: torch.Tensor, aux_images: torch.Tensor, victim_images: torch.Tensor,
            log: Callable[[str], None] | None = None) -> InversionResult:
        """Invert every victim's map (in batches); converged only if every batch reached its plateau."""
        if len(exposed) != len(victim_images):
            raise ValueError(f"{len(exposed)} exposed maps for {len(victim_images)} victim images")
        t0 = time.perf_counter()
        victims = _unit(victim_images)
        start = _unit(aux_images).mean(0, keepdim=True)
        if start.shape[-2:] != victims.shape[-2:]:
            start = F.interpolate(start, size=victims.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        recon, curves, flags = [], [], []
        for i in range(0, len(exposed), self.batch):
            x, curve, ok, _ = self.invert(exposed[i:i + self.batch], start, log)
            recon.append(x)
            curves.append(curve)
            flags.append(ok)
        images = torch.cat(recon)
        longest = max(len(c) for c in curves)
        curve = [float(np.mean([c[min(s, len(c) - 1)] for c in curves])) for s in range(longest)]
        ssim = structural_similarity_index_measure(images, victims, data_range=1.0, reduction="none")
        psnr = peak_signal_noise_ratio(images, victims, data_range=1.0, reduction="none", dim=(1, 2, 3))
        assert isinstance(ssim, torch.Tensor)  # a tuple only with return_full_image
        return InversionResult(images, ssim.numpy(), psnr.numpy(), curve, all(flags), longest,
                               time.perf_counter() - t0, self.config())

    def on(self, view: View, command: str | None = None) -> AttackResult:
        aux, exposed, truth = view.need("aux_images", "exposed", "truth")
        r = self.run(exposed, aux, truth)
        prior_ssim, prior_psnr = prior_scores(aux, truth, truth.shape[-1])
        measures = {"ssim": Measure.of("SSIM of reconstruction vs victim image", r.ssim, float(prior_ssim.mean())),
                    "psnr_db": Measure.of("PSNR (dB) of reconstruction vs victim image", r.psnr,
                                          float(prior_psnr.mean()))}
        return self.measured(measures, command, r, converged=r.converged, steps=r.steps, loss_curve=r.loss_curve,
                             determined=r.converged, seconds=r.seconds, config=r.config,
                             baseline="adversary's mean auxiliary image, no features used")


__all__ = ["InversionResult", "WhiteBoxInversionAttack", "plateaued", "total_variation"]
