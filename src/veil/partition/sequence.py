"""Turn a torchvision CNN into an ordered list of layers whose composition *is* the model, and name its split points.

Why: a split point K means "units [0, K) run in the enclave, [K, end) on the accelerator". That only makes sense
once the model is a flat sequence. The helper is generic (top-level children in order, ``Sequential`` feature
containers expanded one level, a ``Flatten`` before the first child that holds a ``Linear``) and it checks itself:
given an example input, the sequence must reproduce ``model(x)``, else it refuses (a model whose ``forward`` is not
a plain chain, e.g. Inception's aux branches, cannot be split this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from veil.errors import VeilError


@dataclass(frozen=True)
class SplitPoint:
    """A candidate boundary: ``index`` units before it run in the enclave; ``label`` is how people name it."""

    index: int
    label: str


class LayerSequence(nn.Module):
    """Named units applied in order. ``names[i]`` is the unit's dotted path in the original model (its weight keys)."""

    def __init__(self, units: list[tuple[str, nn.Module]]):
        super().__init__()
        self.names = [n for n, _ in units]
        self.units = nn.ModuleList([m for _, m in units])

    def __len__(self) -> int:
        return len(self.units)

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for unit in self.units[start:stop]:
            x = unit(x)
        return x

    def state_prefixes(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Weight-key prefixes of units [start, stop): what one side of a split must load, and nothing more."""
        return [n for n in self.names[start:stop] if not n.startswith("<")]


def _has_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or any(isinstance(c, nn.Linear) for c in m.modules())


def to_sequence(model: nn.Module, example: torch.Tensor | None = None, atol: float = 1e-5) -> LayerSequence:
    """The model as a :class:`LayerSequence` (sharing its modules), checked against ``model(example)`` if given."""
    units: list[tuple[str, nn.Module]] = []
    flattened = False
    for name, child in model.named_children():
        if not flattened and _has_linear(child):
            units.append(("<flatten>", nn.Flatten(1)))
            flattened = True
        if isinstance(child, nn.Sequential) and not _has_linear(child):
            units.extend((f"{name}.{sub}", m) for sub, m in child.named_children())
        else:
            units.append((name, child))
    if not units:
        raise VeilError(f"{type(model).__name__} has no child modules to split")
    seq = LayerSequence(units)
    if example is not None:
        check_sequence(model, seq, example, atol)
    return seq


@torch.no_grad()
def check_sequence(model: nn.Module, seq: LayerSequence, example: torch.Tensor, atol: float = 1e-5) -> None:
    """Refuse a sequence that does not reproduce the model (the model's forward is not a plain chain)."""
    was = model.training
    model.eval()
    try:
        want, got = model(example), seq(example)
    finally:
        model.train(was)
    if want.shape != got.shape or not torch.allclose(want, got, atol=atol, rtol=1e-4):
        raise VeilError(f"{type(model).__name__}'s forward is not a plain chain of its children; "
                        "it cannot be split as a layer sequence")


def candidate_splits(seq: LayerSequence, granularity: str = "stage") -> list[SplitPoint]:
    """Block boundaries, shallow to deep, before global pooling (after it nothing image-like is exposed).

    ResNet: after the stem, then after each stage ``layer1..4`` (``granularity='block'``: after each bottleneck).
    VGG: after each max-pool (conv blocks 1-5). EfficientNet: after each ``features.i`` stage.
    dlib's face ResNet: after the stem's max-pool, then after each residual level ``level1..5`` (the
    same numbering as the ExtNet cuts ``dlib-resnet-cut1..5``).
    Other chains: after every unit before the first adaptive pooling.
    """
    if granularity not in ("stage", "block"):
        raise VeilError(f"granularity must be 'stage' or 'block', got {granularity!r}")
    names = seq.names
    end = next((i for i, m in enumerate(seq.units) if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))),
               len(seq))
    points: list[SplitPoint] = []
    if any(n.startswith("layer") for n in names):  # ResNet family
        for i in range(end):
            n = names[i]
            nxt = names[i + 1] if i + 1 < len(names) else ""
            if n == "maxpool":
                points.append(SplitPoint(i + 1, "stem"))
            elif n.startswith("layer"):
                stage = n.split(".")[0]
                if granularity == "block" or not nxt.startswith(stage + "."):
                    points.append(SplitPoint(i + 1, n if granularity == "block" else stage))
    elif any(n.startswith("levels.") for n in names):  # dlib's face ResNet
        for i in range(end):
            if names[i] == "pool":
                points.append(SplitPoint(i + 1, "stem"))
            elif names[i].startswith("levels."):
                points.append(SplitPoint(i + 1, f"level{int(names[i].split('.')[1]) + 1}"))
    elif any(isinstance(m, nn.MaxPool2d) for m in seq.units[:end]):  # VGG family
        block = 0
        for i in range(end):
            if isinstance(seq.units[i], nn.MaxPool2d):
                block += 1
                points.append(SplitPoint(i + 1, f"block{block}"))
    else:
        points = [SplitPoint(i + 1, names[i]) for i in range(end)]
    return points


def resolve_split(seq: LayerSequence, split: int | str, granularity: str = "stage") -> SplitPoint:
    """A split given as a unit index (0 < K <= len) or a candidate label ('layer2', 'block3', 'features.4')."""
    if isinstance(split, str) and not split.lstrip("-").isdigit():
        for p in candidate_splits(seq, "block") + candidate_splits(seq, granularity):
            if p.label == split:
                return p
        labels = ", ".join(p.label for p in candidate_splits(seq, granularity))
        raise VeilError(f"unknown split {split!r}; candidates: {labels}")
    k = int(split)
    if not 0 < k <= len(seq):
        raise VeilError(f"split index {k} out of range: must be 1..{len(seq)} for a {len(seq)}-unit model "
                        f"(units [0, K) run in the enclave)")
    label = next((p.label for p in candidate_splits(seq, granularity) + candidate_splits(seq, "block")
                  if p.index == k), seq.names[k - 1])
    return SplitPoint(k, label)
