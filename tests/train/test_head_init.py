"""``head_init="centroids"``: the cloud's CosFace class weights start at each class's mean embedding (SYNTHETIC).

Pinned: RecNet's BatchNorm statistics are those of the whole store (not a momentum average of batches), each
class weight is the normalised mean of its rows' normalised embeddings under the untrained RecNet, so the first
loss is far below a random head's; an unknown ``head_init`` is refused by name.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from veil.attacks import recnet_fit
from veil.attacks.base import AttackParameterError
from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet
from veil.errors import VeilError
from veil.models.recnet import build_recnet
from veil.store import open_store
from veil.train.cloud import train_recnet
from veil.train.imprint import imprint_class_weights
from veil.train.losses import SoftCosFace, cosface

from .test_ddp import CFG, CLASSES, DIM, ROWS, TOKENS, write_store

LINEAR = replace(CFG, depth=0, init="identity", dim=DIM, emb_dim=DIM, batch_size=16)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("head") / "store", torch.arange(ROWS) % CLASSES)


def test_class_weights_are_the_class_means_under_store_statistics(store: Path) -> None:
    feats, labels = open_store(store).load_all()
    recnet = build_recnet(TOKENS, DIM, LINEAR)
    head = cosface(CLASSES, DIM)
    imprint_class_weights(recnet, head.W, lambda: ((feats[i:i + 24].float(), labels[i:i + 24])
                                                   for i in range(0, ROWS, 24)), CLASSES)
    assert recnet.training                                  # handed back ready to train
    pooled = recnet.head(recnet.norm(recnet.proj(recnet.in_norm(feats.float()))).mean(dim=1)).detach()  # BN input
    assert torch.allclose(recnet.bn.running_mean, pooled.mean(0), atol=1e-5)
    assert torch.allclose(recnet.bn.running_var, pooled.var(0), rtol=1e-4, atol=1e-6)
    recnet.eval()
    with torch.no_grad():
        emb = nn.functional.normalize(recnet(feats.float()), dim=1)
    for c in range(CLASSES):
        mean = nn.functional.normalize(emb[labels == c].mean(0), dim=0)
        assert torch.allclose(head.W[:, c], mean, atol=1e-5)


def test_first_loss_is_far_below_a_random_head(store: Path) -> None:
    _, imprinted = train_recnet(store, replace(LINEAR, head_init="centroids"), show_progress=False)
    _, random = train_recnet(store, LINEAR, show_progress=False)
    assert imprinted["loss"][0] < 0.5 * random["loss"][0]


def test_unknown_head_init_is_refused(store: Path) -> None:
    with pytest.raises(VeilError, match="head_init"):
        train_recnet(store, replace(LINEAR, head_init="zeros"), show_progress=False)


def test_soft_targets_weigh_each_row_share_of_a_class(store: Path) -> None:
    feats, labels = open_store(store).load_all()
    soft = 0.75 * nn.functional.one_hot(labels, CLASSES).float() + 0.25 * nn.functional.one_hot(
        (labels + 1) % CLASSES, CLASSES).float()
    recnet = build_recnet(TOKENS, DIM, LINEAR)
    head = SoftCosFace(CLASSES, DIM)
    imprint_class_weights(recnet, head.W, lambda: [(feats.float(), soft)], CLASSES)
    recnet.eval()
    with torch.no_grad():
        emb = nn.functional.normalize(recnet(feats.float()), dim=1)
    expected = nn.functional.normalize(soft.T @ emb, dim=1).T
    assert torch.allclose(head.W, expected, atol=1e-5)


def test_attack_recnet_follows_the_head_init_of_its_recipe(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feats, labels = open_store(store).load_all()
    calls: list[int] = []

    monkeypatch.setattr(recnet_fit, "imprint_class_weights", lambda *a: calls.append(a[3]))
    recipe = AttackRecNetConfig(**{**LINEAR.__dict__, "epochs": 1})
    fit_recnet(feats, labels, recipe)
    assert calls == []
    fit_recnet(feats, labels, replace(recipe, head_init="centroids"))
    assert calls == [CLASSES]
    with pytest.raises(AttackParameterError, match="head_init"):
        AttackRecNetConfig(head_init="zeros")
