"""XNN-d hyper-parameters: the two training stages, sized by default for minutes on 2 CPU cores.

The paper's recipe (SGD Nesterov lr 0.05, batch 256, cosine; KL at T=4 with weight 0.3 plus
cross-entropy, per the authors' code) is reachable by changing fields; the defaults shorten epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veil.errors import VeilError
from veil.train.cloud import CloudTrainConfig


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise VeilError(f"{name} must be positive, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise VeilError(f"{name} must be non-negative, got {value!r}")


@dataclass
class AdversarialConfig:
    """Stage 1: noise encoder vs. an adversary RecNet trained alongside it on the noised features.

    ``eps`` is the noise bound: the noise of every token has RMS exactly ``eps`` while the clean
    token (LayerNorm, no affine) has RMS 1, so ``eps`` is the noise-to-signal amplitude ratio.
    ``adv_weight`` scales the encoder's loss ``-CE(adversary)``, capped at chance level (log C)
    so that the encoder stops pushing once the adversary is no better than a guess.

    Adversary strength: ``adversary_steps`` adversary steps per encoder step, and a pool of
    ``adversary_pool`` adversaries, one of which is re-initialised every ``reinit_every`` encoder
    steps in turn (0: never), so that the encoder cannot win by fooling one stale adversary.
    ``encoder`` chooses the noise encoder: ``images`` (the paper's, ExtNet's architecture) or
    ``tokens`` (:class:`veil.xnnd.token_noise.TokenNoiseEncoder`, ``encoder_depth`` blocks).
    """

    epochs: int = 6
    batch_size: int = 64
    eps: float = 1.0
    adv_weight: float = 1.0
    encoder_lr: float = 1e-3
    adversary_lr: float = 1e-3
    adversary_steps: int = 1
    adversary_dim: int = 128
    adversary_depth: int = 2
    adversary_pool: int = 1
    reinit_every: int = 0
    encoder: str = "images"
    encoder_depth: int = 1
    weight_decay: float = 1e-4
    margin: float = 0.35
    scale: float = 32.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.encoder not in ("images", "tokens"):
            raise VeilError(f"encoder must be 'images' or 'tokens', got {self.encoder!r}")
        if int(self.reinit_every) < 0:
            raise VeilError(f"reinit_every must be >= 0, got {self.reinit_every!r}")
        if int(self.encoder_depth) < 0:
            raise VeilError(f"encoder_depth must be >= 0, got {self.encoder_depth!r}")
        for name in ("epochs", "batch_size", "adversary_steps", "adversary_dim", "adversary_depth", "adversary_pool"):
            if int(getattr(self, name)) < 1:
                raise VeilError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("encoder_lr", "adversary_lr", "scale"):
            _positive(name, getattr(self, name))
        for name in ("eps", "adv_weight", "weight_decay", "margin"):
            _non_negative(name, getattr(self, name))


@dataclass
class DistillConfig(CloudTrainConfig):
    """Stage 2 (and the teacher): RecNet training with the cloud's recipe and fields, shortened.

    Student loss = ``kd_weight * T^2 * KL(teacher/T || student/T) + ce_weight * CosFace-CE``.
    """

    epochs: int = 30
    batch_size: int = 128
    warmup_epochs: float = 2.0
    dim: int = 128
    temperature: float = 4.0
    kd_weight: float = 0.3
    ce_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "dim", "num_heads", "emb_dim"):
            if int(getattr(self, name)) < 1:
                raise VeilError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.depth) < 0:  # 0: the linear RecNet of the cloud's strong-extractor recipe
            raise VeilError(f"depth must be >= 0, got {self.depth!r}")
        if self.head_init not in ("random", "centroids"):
            raise VeilError(f"head_init must be 'random' or 'centroids', got {self.head_init!r}")
        if self.dim % self.num_heads:
            raise VeilError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        for name in ("lr", "temperature", "scale"):
            _positive(name, getattr(self, name))
        for name in ("momentum", "weight_decay", "warmup_epochs", "margin", "kd_weight", "ce_weight"):
            _non_negative(name, getattr(self, name))
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise VeilError("kd_weight and ce_weight cannot both be 0")


@dataclass
class XnndConfig:
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    teacher: DistillConfig = field(default_factory=lambda: DistillConfig(kd_weight=0.0))
    student: DistillConfig = field(default_factory=DistillConfig)
