"""Evaluation harness for XNN-d on a split: utility, black-box attack, and the other attacks that apply.

This is the experimenter's side: it holds FG and hands the attack only what section 5.3's attacker
holds (a query callable, its own auxiliary images, the intercepted features, gallery features).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from veil.attacks.black_box import BlackBoxAttack, NoiseExpectationAttack
from veil.attacks.known_plaintext import KnownPlaintextAttack
from veil.attacks.leakage import Target
from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.data.faceset import FaceSet
from veil.data.splits import Split
from veil.models.recnet import RecNet
from veil.pipeline import load_group
from veil.xnnd.evaluate import utility
from veil.xnnd.features import generate, query_oracle
from veil.xnnd.generator import FeatureGenerator


@dataclass
class Harness:
    data: Path
    split: Split
    device: torch.device

    def group(self, name: str, img_size: int) -> FaceSet:
        return load_group(self.data, self.split, name, img_size)

    def target(self, fg: FeatureGenerator, faces: FaceSet) -> Target:
        """The owner's intercepted test features (and mirrors), gallery/probe by the owner's seed."""
        feats = generate(fg, faces.images, device=self.device)
        flipped = generate(fg, faces.images, flip=True, device=self.device)
        return Target.from_features(feats, faces.labels, self.split.gallery_seed, flipped)

    def utility(self, fg: FeatureGenerator, recnet: RecNet, faces: FaceSet) -> dict:
        r = utility(fg, recnet, faces, self.split.gallery_seed, device=self.device)
        return {**r["rate"].as_dict(), "gallery": r["gallery"], "chance": r["chance"]}

    def black_box(self, fg: FeatureGenerator, target: Target, aux: FaceSet, cfg: AttackRecNetConfig,
                  budgets: tuple[int, ...] = (), seed: int = 0) -> dict:
        attack = BlackBoxAttack(cfg, flip=True, seed=seed, device=self.device)
        result = attack.run(query_oracle(fg, device=self.device), aux.images, aux.labels, target, budgets)
        return result.as_dict()

    def noise_expectation(self, fg: FeatureGenerator, target: Target, aux: FaceSet, cfg: AttackRecNetConfig,
                          seed: int = 0, eps: float | None = None) -> dict:
        """Public parts only: clean ExtNet tokens of aux images (+ mirrors) and the public noise bound.

        ``eps=0`` is plain transfer: a recogniser trained on clean public features, applied as it is.
        """
        base = FeatureGenerator(fg.ext)
        tokens = torch.cat([generate(base, aux.images, clean=True, device=self.device),
                            generate(base, aux.images, flip=True, clean=True, device=self.device)])
        labels = torch.cat([aux.labels, aux.labels])
        attack = NoiseExpectationAttack(fg.eps if eps is None else eps, cfg, seed, self.device)
        return attack.run(tokens, labels, target)

    def known_plaintext(self, fg: FeatureGenerator, target: Target, leaked: FaceSet, aux: FaceSet,
                        cfg: AttackRecNetConfig, ks: tuple[int, ...] = (0, 16, 64, 256), seed: int = 0) -> dict:
        """k leaked (clean, noised) pairs of owner images; a linear de-noising map fitted by least squares."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(leaked), generator=g)[:max(ks)]
        clean = generate(fg, leaked.images[idx], clean=True, device=self.device)
        noised = generate(fg, leaked.images[idx], device=self.device)
        base = FeatureGenerator(fg.ext)
        aux_tokens = torch.cat([generate(base, aux.images, clean=True, device=self.device),
                                generate(base, aux.images, flip=True, clean=True, device=self.device)])
        aux_labels = torch.cat([aux.labels, aux.labels])
        attack = KnownPlaintextAttack(ks, matrix="gaussian", identifier="recnet", recnet=cfg, device=self.device)
        r = attack.run(clean, noised, target, aux_tokens, aux_labels)
        return {"points": [{"k": p.k, **p.leakage.as_dict(), "residual": p.residual} for p in r.points],
                "identifier": r.identifier, "seconds": r.seconds}
