"""XNN-d's RecNets on the cloud's strong recipe (``--recnet-depth 0``), SYNTHETIC tokens.

Pinned: depth 0 gives teacher, server and attackers the linear identity-initialised RecNet with the class-mean
head and the recipe's lr, while stage 1's adversaries keep one block; the teacher's head starts at the class means
(its first loss is far below a random head's); a positive depth keeps the old behaviour.
"""

from __future__ import annotations

import torch

from veil.presets import STRONG_EXTNET_CLOUD
from veil.xnnd.config import DistillConfig
from veil.xnnd.distill import train_teacher
from veil.xnnd.sweep import SweepConfig


def synthetic_tokens(rows: int = 96, classes: int = 8, tokens: int = 4, dim: int = 16) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(rows) % classes
    protos = torch.randn(classes, tokens, dim, generator=g)
    return protos[labels] + 0.5 * torch.randn(rows, tokens, dim, generator=g), labels


def test_depth_zero_is_the_clouds_strong_recipe() -> None:
    cfg = SweepConfig(recnet_depth=0)
    for recipe in (cfg.attack(), cfg.distill(3)):
        assert (recipe.depth, recipe.init, recipe.head_init, recipe.lr) == (
            0, "identity", "centroids", STRONG_EXTNET_CLOUD.lr)
    assert cfg.adversary_depth == 1
    old = SweepConfig(recnet_depth=2)
    assert (old.attack().depth, old.attack().init, old.attack().head_init, old.adversary_depth) == (
        2, "random", "random", 2)


def test_strong_teacher_starts_from_the_class_means() -> None:
    feats, labels = synthetic_tokens()
    strong = SweepConfig(recnet_depth=0).distill(1, 0.0)
    random_head = DistillConfig(**{**strong.__dict__, "head_init": "random"})
    _, _, imprinted = train_teacher(feats, labels, strong, show_progress=False)
    _, _, plain = train_teacher(feats, labels, random_head, show_progress=False)
    assert imprinted["loss"][0] < 0.5 * plain["loss"][0]
