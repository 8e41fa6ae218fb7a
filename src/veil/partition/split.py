"""``partition(model, split)``: the enclave half and the accelerator half of a model, as two plain modules.

Why separate from the sequence helper: the two halves are what each party deploys; composing them must give the
unsplit model's output (to float tolerance), which is the first thing the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from veil.partition.sequence import LayerSequence, SplitPoint, resolve_split, to_sequence


class Part(nn.Module):
    """Units [start, stop) of a sequence, keeping their original dotted names for weight loading."""

    def __init__(self, seq: LayerSequence, start: int, stop: int):
        super().__init__()
        self.names = seq.names[start:stop]
        self.units = nn.ModuleList(seq.units[start:stop])
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    def prefixes(self) -> list[str]:
        return [n for n in self.names if not n.startswith("<")]


@dataclass
class Partitioned:
    """The two halves and where the cut is. ``enclave(x)`` is the exposed feature map."""

    enclave: Part
    accelerator: Part
    point: SplitPoint
    sequence: LayerSequence

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.accelerator(self.enclave(x))


def partition(model: nn.Module | LayerSequence, split: int | str, example: torch.Tensor | None = None) -> Partitioned:
    """Cut ``model`` so units [0, K) go to the enclave and [K, end) to the accelerator.

    ``split`` is an index K or a candidate label ('layer2', 'block3', ...). With ``example`` the sequence is
    first checked against the unsplit model.
    """
    seq = model if isinstance(model, LayerSequence) else to_sequence(model, example)
    point = resolve_split(seq, split)
    return Partitioned(Part(seq, 0, point.index), Part(seq, point.index, len(seq)), point, seq)
