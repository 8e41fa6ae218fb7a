"""The cloud's closed-form recipe (``fit="lda"``, veil.train.closed_form) on SYNTHETIC tokens.

Pinned: where a shared nuisance direction dominates the raw cosine, the cross-validation over identities picks a
discriminant and it identifies *unseen* persons better than the untrained map; where nothing beats the untrained
map it is kept (ties go to the identity); the fit is equivariant under an orthogonal XNN map (obfuscated store,
obfuscated probes: the same embeddings up to rounding); class statistics weigh each identity once; the cloud
trains and saves it through ``train_recnet``/``train_to_file``; the adversary's ``fit_recnet`` follows the same
recipe, a per-batch transform applied to its one pass over the rows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet
from veil.errors import VeilError
from veil.metrics import top1
from veil.models.recnet import load_recnet
from veil.obfuscation.xnn import XNN
from veil.store import StoreWriter
from veil.train.closed_form import IDENTITY, LDAGrid, class_scatter, fit_lda, fit_lda_recnet, linear_recnet
from veil.train.cloud import CloudTrainConfig, train_recnet, train_to_file
from veil.train.imprint import imprint_class_weights
from veil.train.validation import gallery_and_probes

TOKENS, DIM = 4, 16
GRID = LDAGrid(shrinkages=(0.1, 1.0), dims=(4, 8, 16), folds=4, repeats=2)


def nuisance_faces(identities: int, per_identity: int, seed: int, nuisance: float = 3.0,
                   offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SYNTHETIC tokens: identity lives in dims 0-7, a strong within-class nuisance in dims 8-11 (like pose or
    light), small noise elsewhere; every token of a face is its face vector plus token noise."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(identities, DIM)
    means[:, :8] = torch.randn(identities, 8, generator=g)
    labels = torch.arange(identities).repeat_interleave(per_identity)
    face = means[labels] + 0.2 * torch.randn(len(labels), DIM, generator=g)
    face[:, 8:12] += nuisance * torch.randn(len(labels), 4, generator=g)
    tokens = face.unsqueeze(1) + 0.1 * torch.randn(len(labels), TOKENS, DIM, generator=g)
    return tokens, labels + offset


def top1_rate(embed, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        emb = embed(tokens)
    gallery, probes = gallery_and_probes(labels, 0)
    return top1(emb[gallery], labels[gallery], emb[probes], labels[probes])[0].value


def test_a_discriminant_is_chosen_when_it_helps_unseen_persons() -> None:
    tokens, labels = nuisance_faces(60, 6, seed=0)
    recnet, fit = fit_lda_recnet(tokens, labels, GRID)
    assert fit.choice != IDENTITY and fit.cv_top1[fit.choice] > fit.cv_top1[IDENTITY] + 0.2
    unseen, unseen_labels = nuisance_faces(40, 6, seed=1)
    pooled = top1_rate(lambda t: t.mean(dim=1), unseen, unseen_labels)
    assert top1_rate(recnet, unseen, unseen_labels) > pooled + 0.2


def test_the_untrained_map_is_kept_when_nothing_beats_it() -> None:
    g = torch.Generator().manual_seed(2)
    means = torch.randn(20, DIM, generator=g)
    labels = torch.arange(20).repeat_interleave(4)
    tokens = means[labels].unsqueeze(1) + 0.01 * torch.randn(len(labels), TOKENS, DIM, generator=g)
    recnet, fit = fit_lda_recnet(tokens, labels, GRID)
    assert set(fit.cv_top1.values()) == {1.0} and fit.choice == IDENTITY   # a tie keeps the identity
    assert torch.allclose(recnet(tokens), tokens.mean(dim=1), atol=1e-6)


def test_xnn_and_vanilla_get_the_same_embedding() -> None:
    tokens, labels = nuisance_faces(60, 6, seed=3)
    unseen, _ = nuisance_faces(10, 3, seed=4, offset=60)
    xnn = XNN.random(TOKENS, DIM, generator=torch.Generator().manual_seed(5)).eval()
    with torch.no_grad():
        clean_net, clean_fit = fit_lda_recnet(tokens, labels, GRID)
        obf_net, obf_fit = fit_lda_recnet(xnn(tokens), labels, GRID)
        clean, obf = clean_net(unseen), obf_net(xnn(unseen))
    assert obf_fit.choice == clean_fit.choice and obf_fit.cv_top1 == pytest.approx(clean_fit.cv_top1)
    cos = nn.functional.normalize
    assert torch.allclose(cos(clean, dim=1) @ cos(clean, dim=1).T, cos(obf, dim=1) @ cos(obf, dim=1).T, atol=1e-4)


def test_the_choice_does_not_depend_on_the_anonymous_label_numbers() -> None:
    tokens, labels = nuisance_faces(40, 5, seed=11, nuisance=1.0)
    renumber = torch.randperm(40, generator=torch.Generator().manual_seed(12))   # another store's label map
    a = fit_lda(tokens.mean(1), labels, GRID)
    b = fit_lda(tokens.mean(1), renumber[labels], GRID)
    assert a.choice == b.choice and a.cv_top1 == b.cv_top1 and a.cv_probes == b.cv_probes == 4 * 40 * GRID.repeats


def test_class_statistics_weigh_each_identity_once() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0] * 20 + [1] * 5 + [2] * 5)   # one identity with most of the rows
    within, between = class_scatter(x, nn.functional.one_hot(labels).double())
    covs = [torch.cov(x[labels == c].T, correction=0) for c in range(3)]
    means = torch.stack([x[labels == c].mean(0) for c in range(3)])
    assert torch.allclose(within, sum(covs) / 3) and torch.allclose(between, torch.cov(means.T, correction=0))
    soft = torch.zeros(30, 3, dtype=torch.float64)   # mixed rows count for each class by their share
    soft[torch.arange(30), labels] = 1.0
    soft[0] = torch.tensor([0.5, 0.5, 0.0])
    within_soft, _ = class_scatter(x, soft)
    assert not torch.allclose(within_soft, within)
    tokens, hard = nuisance_faces(24, 4, seed=7)
    assert fit_lda(tokens.mean(1), hard, GRID).choice == fit_lda(tokens.mean(1), nn.functional.one_hot(hard).float(),
                                                                 GRID).choice


def test_linear_recnet_is_the_mean_of_the_tokens_times_the_map() -> None:
    matrix = torch.randn(DIM, 5)
    tokens = torch.randn(7, TOKENS, DIM)
    recnet = linear_recnet(TOKENS, matrix)
    assert torch.allclose(recnet(tokens), tokens.mean(dim=1) @ matrix, atol=1e-5)
    with pytest.raises(VeilError, match="no normalisation layers"):
        imprint_class_weights(recnet, torch.zeros(5, 3), lambda: iter(()), 3)


def test_too_few_identities_are_refused_by_name() -> None:
    tokens, labels = nuisance_faces(3, 4, seed=8)
    with pytest.raises(VeilError, match="too few"):
        fit_lda_recnet(tokens, labels, GRID)


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def test_the_cloud_fits_saves_and_reloads_it(tmp_path: Path, single_process: None) -> None:
    tokens, labels = nuisance_faces(40, 4, seed=9)
    writer = StoreWriter(tmp_path / "store", {"num_classes": 40, "synthetic": True}, shard_size=64)
    writer.add(tokens, labels)
    writer.close()
    cfg = CloudTrainConfig(fit="lda")
    recnet, history = train_recnet(tmp_path / "store", cfg, show_progress=False)
    assert history["fit"]["choice"] != IDENTITY and history["loss"] == [] and history["rows"] == 160
    history = train_to_file(tmp_path / "store", tmp_path / "r.safetensors", cfg, "cpu", show_progress=False)
    loaded, info = load_recnet(tmp_path / "r.safetensors")
    assert info["fit"]["choice"] == history["fit"]["choice"] and info["final_loss"] is None
    assert not loaded.cfg.norms and torch.allclose(loaded(tokens), recnet(tokens), atol=1e-6)
    with pytest.raises(VeilError, match="val_fraction"):
        train_recnet(tmp_path / "store", replace(cfg, val_fraction=0.2), show_progress=False)
    with pytest.raises(VeilError, match="fit must be"):
        train_recnet(tmp_path / "store", replace(cfg, fit="newton"), show_progress=False)


def test_the_adversary_fits_the_same_way() -> None:
    tokens, labels = nuisance_faces(40, 4, seed=10)
    cfg = AttackRecNetConfig(fit="lda")
    assert torch.allclose(fit_recnet(tokens, labels, cfg)(tokens), fit_lda_recnet(tokens, labels)[0](tokens))
    xnn = XNN.random(TOKENS, DIM, generator=torch.Generator().manual_seed(13)).eval()
    with torch.no_grad():  # a per-batch transform (here the same map every batch) is applied before the fit
        moved = xnn(tokens)
        assert torch.allclose(fit_recnet(tokens, labels, cfg, transform=xnn)(moved),
                              fit_lda_recnet(moved, labels)[0](moved), atol=1e-5)
