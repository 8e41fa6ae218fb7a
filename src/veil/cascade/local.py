"""The baseline: the same layers trained in one process, same seed, same batches. Accuracy must match."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from veil.cascade import data as D
from veil.cascade.models import NLL, ModelSpec, build_all


@dataclass
class LocalResult:
    accuracy: float
    epoch_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)  # held-out accuracy after each epoch, if tracked
    layers: list[nn.Module] = field(default_factory=list)


def _forward(layers: list[nn.Module], x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    for layer in layers:
        x = layer(x, y) if isinstance(layer, NLL) else layer(x)
    return x


def accuracy(layers: list[nn.Module], x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Test-phase accuracy: the designer's metric, in batches like the cascade's test phase."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = _forward(layers, x[i : i + batch], None)
            correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return correct / max(len(x), 1)


def train_local(spec: ModelSpec, ds: D.Dataset, epochs: int, seed: int, track_accuracy: bool = False) -> LocalResult:
    """SGD over the whole model; per-layer SGD in the cascade is the same arithmetic. With ``track_accuracy``,
    the held-out accuracy after every epoch (outside the timed part), to show where training plateaus."""
    layers = build_all(spec, seed)
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.SGD(params, lr=float(spec.optimizer.get("lr", 0.01)),
                          momentum=float(spec.optimizer.get("momentum", 0.0)))
    res = LocalResult(accuracy=0.0, layers=layers)
    spe = D.steps_per_epoch(len(ds.x_train), spec.batch)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for b in range(spe):
            x, y = D.batch_at(ds, spec.batch, seed, epoch * spe + b)
            opt.zero_grad(set_to_none=True)
            loss = _forward(layers, x, y)
            loss.backward()
            opt.step()
            res.losses.append(float(loss.detach()))
        res.epoch_seconds.append(time.perf_counter() - t0)
        if track_accuracy:
            res.epoch_accuracy.append(accuracy(layers, ds.x_test, ds.y_test, spec.batch))
    res.accuracy = accuracy(layers, ds.x_test, ds.y_test, spec.batch)
    return res
