"""Train a partitionable model on the available images (identity classification at a CPU-friendly size).

Why: the question "what does the exposed feature map reveal?" is only meaningful for a trained network; a random
one is a different (and misleading) object. This is a small, honest trainer, not a recipe for accuracy: the
held-out accuracy it reports (with n and a Wilson 95% interval) says how well trained the network actually is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from veil.data.faceset import FaceSet
from veil.metrics import Rate
from veil.partition.models import ModelSpec, build_model, preprocess


@dataclass
class TrainResult:
    model: nn.Module
    spec: ModelSpec
    val_accuracy: Rate
    train_accuracy_last_epoch: float
    seconds: float
    epochs: int


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random 2-pixel shift (padding by reflection)."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    pad = F.pad(x, (2, 2, 2, 2), mode="reflect")
    i, j = torch.randint(0, 5, (2,), generator=g).tolist()
    return pad[..., i:i + x.shape[-2], j:j + x.shape[-1]]


@torch.no_grad()
def accuracy(model: nn.Module, spec: ModelSpec, faces: FaceSet, batch: int = 256) -> Rate:
    model.eval()
    hits = 0
    for i in range(0, len(faces), batch):
        logits = model(preprocess(faces.images[i:i + batch], spec))
        hits += int((logits.argmax(1) == faces.labels[i:i + batch]).sum())
    return Rate(hits, len(faces))


# VGG-16 has no BatchNorm: from scratch it stalls at chance with AdamW at 1e-3. EfficientNet-B0 learns slowly at
# 1e-3 on a few thousand 32 px images (3.9% after 8 epochs; 13.3% after 30 epochs at 3e-3).
DEFAULT_LR = {"vgg16": 2e-4, "efficientnet_b0": 3e-3}


def train_classifier(arch: str, train: FaceSet, val: FaceSet, image_size: int = 32, epochs: int = 4,
                     batch_size: int = 64, lr: float | None = None, seed: int = 0,
                     on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """AdamW + cosine schedule, flips and shifts; returns the eval-mode model and its held-out accuracy."""
    torch.manual_seed(seed)
    lr = lr or DEFAULT_LR.get(arch, 1e-3)
    spec = ModelSpec(arch=arch, num_classes=len(train.names), image_size=image_size, classes=list(train.names))
    model = build_model(spec).train()
    steps_per_epoch = max(1, len(train) // batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    step = 0
    correct = seen = 0
    for _epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=g)
        correct = seen = 0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = _augment(preprocess(train.images[idx], spec), g)
            y = train.labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if on_step:
                on_step(step, total, loss.item())
    model.eval()
    return TrainResult(model, spec, accuracy(model, spec, val), correct / max(seen, 1), time.perf_counter() - t0,
                       epochs)
