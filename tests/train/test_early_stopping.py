"""The cloud's early stopping on held-out identities of the store (SYNTHETIC stores from test_ddp.py).

Pinned: held-out identities never reach the training batches and the CosFace head has only the others;
validation scores epoch 0 (the untrained RecNet) and every epoch after; training stops once ``patience``
epochs pass without a better score; and the RecNet returned carries the best epoch's weights, the
untrained ones when no epoch beats them. The validation scores are scripted (a spy records the weights each
score was given for), so which epoch is best is known in advance; the weights are real training's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from veil.errors import VeilError
from veil.train import cloud
from veil.train.cloud import train_recnet
from veil.train.validation import BestEpoch, gallery_and_probes, holdout_identities, identification_top1

from .test_ddp import CFG, CLASSES, ROWS, write_store


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("early") / "store", torch.arange(ROWS) % CLASSES)


def scripted_scores(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> list[dict[str, torch.Tensor]]:
    """Make validation return ``scores`` in turn; record the RecNet weights each score was given for."""
    seen: list[dict[str, torch.Tensor]] = []

    def fake(model, feats, labels, gallery, probes, device, batch_size=512):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return scores[len(seen) - 1]

    monkeypatch.setattr(cloud, "identification_top1", fake)
    return seen


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stops_after_patience_and_restores_the_best_epoch(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = scripted_scores(monkeypatch, [0.5, 0.6, 0.9, 0.7, 0.6, 0.95, 0.99, 0.99, 0.99, 0.99, 0.99])
    cfg = replace(CFG, epochs=10, batch_size=16, val_fraction=0.25, patience=2)
    recnet, history = train_recnet(store, cfg, show_progress=False)
    assert len(history["loss"]) == 4                      # epochs 3 and 4 did not beat epoch 2: stop
    assert history["val_top1"] == [0.5, 0.6, 0.9, 0.7, 0.6]
    assert history["best_epoch"] == 2
    assert same_weights(recnet.state_dict(), seen[2])
    assert not same_weights(seen[2], seen[4])             # training really moved the weights after the best


def test_without_patience_every_epoch_runs_and_the_best_is_kept(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = scripted_scores(monkeypatch, [0.1, 0.4, 0.8, 0.3])
    recnet, history = train_recnet(store, replace(CFG, epochs=3, batch_size=16, val_fraction=0.25),
                                   show_progress=False)
    assert len(history["loss"]) == 3 and history["best_epoch"] == 2
    assert same_weights(recnet.state_dict(), seen[2])


def test_untrained_recnet_is_returned_when_no_epoch_beats_it(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = scripted_scores(monkeypatch, [0.9, 0.9, 0.5, 0.4])   # a tie keeps the earlier epoch
    recnet, history = train_recnet(store, replace(CFG, epochs=3, batch_size=16, val_fraction=0.25, init="identity",
                                                  dim=16, emb_dim=16, depth=0), show_progress=False)
    assert history["best_epoch"] == 0
    assert same_weights(recnet.state_dict(), seen[0])
    assert torch.equal(recnet.proj.weight, torch.eye(16))


def test_held_out_identities_never_reach_training(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[torch.Tensor] = []
    real = cloud._Trainee.forward

    def forward(self, x, y):
        batches.append(x.detach().clone())
        return real(self, x, y)

    monkeypatch.setattr(cloud._Trainee, "forward", forward)
    _, history = train_recnet(store, replace(CFG, epochs=2, batch_size=16, val_fraction=0.25), show_progress=False)
    held = 2                                                # 25% of 8 identities
    assert history["val_identities"] == held and history["train_classes"] == CLASSES - held
    assert history["rows"] == ROWS - history["val_rows"] == ROWS * (CLASSES - held) // CLASSES
    feats, labels = cloud.open_store(store).load_all()
    keep, _, val_labels = holdout_identities(labels, CLASSES, 0.25, CFG.seed)
    trained = torch.cat(batches)
    for row in feats[~keep]:
        assert not (trained == row).flatten(1).all(1).any()
    assert set(val_labels.tolist()).isdisjoint(labels[keep].tolist())


def test_real_validation_scores_are_rates_and_a_trained_run_records_them(store: Path) -> None:
    _, history = train_recnet(store, replace(CFG, epochs=3, batch_size=16, val_fraction=0.25), show_progress=False)
    assert len(history["val_top1"]) == 4
    assert all(0.0 <= s <= 1.0 for s in history["val_top1"])
    assert history["val_top1"][history["best_epoch"]] == max(history["val_top1"])


def test_holdout_renumbers_the_kept_identities_densely() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9])
    keep, train_labels, val_labels = holdout_identities(labels, 10, 0.3, seed=1)
    assert len(torch.unique(val_labels)) == 3
    assert sorted(torch.unique(train_labels).tolist()) == list(range(7))
    assert int(keep.sum()) == 14 and len(val_labels) == 6
    again = holdout_identities(labels, 10, 0.3, seed=1)
    assert torch.equal(again[2], val_labels)


def test_gallery_has_one_row_per_identity_and_probes_the_rest() -> None:
    labels = torch.tensor([7, 7, 7, 3, 3, 9])
    gallery, probes = gallery_and_probes(labels, seed=0)
    assert sorted(labels[gallery].tolist()) == [3, 7, 9]
    assert sorted(gallery.tolist() + probes.tolist()) == list(range(6))


def test_identification_top1_scores_a_perfect_embedding() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    feats = torch.eye(3)[labels].unsqueeze(1)             # SYNTHETIC: each identity its own axis
    gallery, probes = gallery_and_probes(labels, seed=0)
    model = torch.nn.Flatten()
    assert identification_top1(model, feats, labels, gallery, probes, torch.device("cpu")) == 1.0
    wrong = torch.eye(3)[torch.tensor([1, 2, 2, 0, 0, 1])].unsqueeze(1)   # every probe looks like another
    assert identification_top1(model, wrong, labels, gallery, probes, torch.device("cpu")) < 1.0


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.9])
def test_holdout_refuses_fractions_that_leave_nothing(fraction: float) -> None:
    with pytest.raises(VeilError):
        holdout_identities(torch.arange(10), 10, fraction, seed=0)


def test_patience_must_be_positive() -> None:
    with pytest.raises(VeilError, match="patience"):
        BestEpoch(0)
