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


PRESETS = {
    "demo": Preset("demo", cloud=CloudTrainConfig(epochs=20, dim=128)),
    "bench": Preset("bench", cloud=CloudTrainConfig(epochs=40, dim=128)),
    "hybrid-demo": Preset("hybrid-demo", extractor_name="hybrid", pretrain=PretrainConfig(epochs=12),
                          cloud=CloudTrainConfig(epochs=20, dim=128)),
    "hybrid-bench": Preset("hybrid-bench", extractor_name="hybrid", pretrain=PretrainConfig(epochs=30),
                           cloud=CloudTrainConfig(epochs=40, dim=128)),
}
