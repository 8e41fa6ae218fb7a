"""Sizes of an end-to-end run (``veil demo``, ``bench/xnn.py``): which extractor, how long the cloud trains.

Kept apart from the demo so the library modules and bench scripts that need a preset do not import the
demo's orchestration (and with it ``veil.keys``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veil.data.splits import SplitSpec
from veil.models.extractor import ExtractorConfig
from veil.models.registry import DEFAULT_EXTRACTOR
from veil.train.cloud import CloudTrainConfig
from veil.train.pretrain import PretrainConfig


@dataclass
class Preset:
    """One run's sizes. ``extractor_name`` is a registry name (``veil extractor list``); ``hybrid`` means
    the ResNet-18/ViT extractor pre-trained here from scratch with ``extractor`` and ``pretrain``."""

    name: str
    split: SplitSpec = field(default_factory=SplitSpec)
    extractor_name: str = DEFAULT_EXTRACTOR
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    cloud: CloudTrainConfig = field(default_factory=CloudTrainConfig)
    matrix: str = "orthogonal"


# The cloud's recipe for a strong pre-trained ExtNet: a linear RecNet (no transformer block) that starts as
# mean pooling of the tokens and learns a correction for 5 epochs. Measured on LFW at cut 4 (tokens cached,
# owner_test top-1, n = 1,094): random init, 2 blocks, 20 epochs 53.4%; linear, random init 61.2%;
# linear, identity init, 20 epochs 69.5%, 5 epochs 71.4%; no training at all (pooled cosine) 69.7%.
STRONG_EXTNET_CLOUD = CloudTrainConfig(epochs=5, depth=0, init="identity")

PRESETS = {
    "demo": Preset("demo", cloud=STRONG_EXTNET_CLOUD),
    "bench": Preset("bench", cloud=STRONG_EXTNET_CLOUD),
    "hybrid-demo": Preset("hybrid-demo", extractor_name="hybrid", pretrain=PretrainConfig(epochs=12),
                          cloud=CloudTrainConfig(epochs=20, dim=128)),
    "hybrid-bench": Preset("hybrid-bench", extractor_name="hybrid", pretrain=PretrainConfig(epochs=30),
                           cloud=CloudTrainConfig(epochs=40, dim=128)),
}
