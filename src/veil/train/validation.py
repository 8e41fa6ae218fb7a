"""Early stopping for the cloud's RecNet on identities of the store it holds out from training.

Why: with a strong pre-trained ExtNet on aligned faces, mean pooling of the tokens is already a good embedding,
and a few epochs of CosFace on a few hundred identities can make it *worse* on persons never seen. The cloud
holds only the store (obfuscated features and anonymous labels), which is enough to check this itself: it sets
some anonymous identities aside, scores top-1 identification among them (one gallery row per identity, the
rest probes, as the owner's utility) before training and after every epoch, and keeps the best weights. It
needs nothing the cloud does not already hold: no key, no image, no name.

The score is biased upwards and only good for ranking epochs: the cloud does not know which rows are the owner's
mirror copies, so a gallery row's mirror is among the probes (on aligned LFW at cut 4 the held-out score of the
untrained network is 96.8% where the owner's test persons give 92.6%).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from veil.data.faceset import FaceSet
from veil.data.splits import gallery_probe
from veil.errors import VeilError
from veil.metrics import top1


def holdout_identities(labels: torch.Tensor, num_classes: int, fraction: float,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split rows by identity: (train row mask, train labels renumbered 0..k-1, validation labels).

    ``fraction`` of the store's identities (at least 2, chosen by ``seed``) go to validation; the others are
    renumbered densely so the CosFace head only has classes it trains on.
    """
    if not 0.0 < fraction < 1.0:
        raise VeilError(f"validation fraction must be between 0 and 1, got {fraction}")
    present = torch.unique(labels)
    k = max(2, round(fraction * len(present)))
    if k >= len(present) - 1:
        raise VeilError(f"holding out {k} of {len(present)} identities leaves too few to train on")
    order = present[torch.randperm(len(present), generator=torch.Generator().manual_seed(seed))]
    held = torch.zeros(num_classes, dtype=torch.bool)
    held[order[:k]] = True
    train_mask = ~held[labels]
    renumber = torch.full((num_classes,), -1, dtype=torch.long)
    kept = torch.tensor(sorted(set(range(num_classes)) - set(order[:k].tolist())), dtype=torch.long)
    renumber[kept] = torch.arange(len(kept))
    return train_mask, renumber[labels[train_mask]], labels[~train_mask]


def gallery_and_probes(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One gallery row per identity (seeded), every other row a probe: the owner's rule (``gallery_probe``)."""
    _, dense = torch.unique(labels, return_inverse=True)
    names = [str(i) for i in range(int(dense.max()) + 1)] if len(dense) else []
    return gallery_probe(FaceSet(torch.zeros(len(dense), 3, 1, 1, dtype=torch.uint8), dense, names), seed)


@torch.no_grad()
def identification_top1(model: nn.Module, feats: torch.Tensor, labels: torch.Tensor, gallery: torch.Tensor,
                        probes: torch.Tensor, device: torch.device, batch_size: int = 512) -> float:
    """Top-1 of ``model``'s embeddings of ``feats``, probes against a one-row-per-identity gallery (eval mode)."""
    was_training = model.training
    model.eval()
    emb = torch.cat([model(feats[i:i + batch_size].to(device).float()).cpu()
                     for i in range(0, len(feats), batch_size)])
    model.train(was_training)
    rate, _ = top1(emb[gallery], labels[gallery], emb[probes], labels[probes])
    return rate.value


class BestEpoch:
    """Keeps the weights of the best validation score seen so far and says when ``patience`` has run out.

    Epoch 0 is the model before any training (for the identity-initialised RecNet: mean pooling), so a run
    whose training never helps on held-out identities returns the untrained network. Ties keep the earlier
    epoch (fewer steps on the store).
    """

    def __init__(self, patience: int | None = None) -> None:
        if patience is not None and patience < 1:
            raise VeilError(f"patience must be at least 1 epoch, got {patience}")
        self.patience = patience
        self.best_score = float("-inf")
        self.best_epoch = -1
        self.scores: list[float] = []
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, score: float, model: nn.Module) -> bool:
        """Record ``score`` for ``epoch``; returns True when training should stop."""
        self.scores.append(score)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._state = copy.deepcopy(model.state_dict())
        return self.patience is not None and epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights (and BatchNorm statistics) into ``model``."""
        if self._state is None:
            raise VeilError("no validation score was recorded, nothing to restore")
        model.load_state_dict(self._state)
