"""The trainer's prepared headers (built during the previous step): used only for the cascade and the labels they
were built for, never twice, and not after they have aged. SYNTHETIC hops and labels; a stub inbox builds routes."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from veil.cascade import trainer as trainer_mod
from veil.cascade.inbox import Route, TimeBound
from veil.cascade.models import load_spec
from veil.cascade.packet import Hop
from veil.cascade.pool import Entry
from veil.cascade.selection import Cascade
from veil.cascade.trainer import Trainer


class StubInbox:
    def __init__(self) -> None:
        self.timing: Counter[str] = Counter()
        self.built = 0

    def route(self, path: list[Hop], routes: list) -> Route:
        self.built += 1
        return Route(path[0].address, b"h%d" % self.built, [], b"t%d" % self.built, routes[0].op)


def _cascade(port: int = 1) -> Cascade:
    entries = [Entry(f"127.0.0.1:{port + i}", bytes([i + 1]) * 32) for i in range(3)]
    c = Cascade(entries, [0, None, 1])
    c.bound |= {e.address for e in entries}  # sessions: the hops' headers are built in session mode
    return c


@pytest.fixture
def trainer() -> Trainer:
    return Trainer(StubInbox(), load_spec("mlp", 784), TimeBound(), microbatches=2,  # type: ignore[arg-type]
                   rng=random.Random(0))


def test_prepared_headers_are_used_once_for_the_same_cascade_and_labels(trainer: Trainer) -> None:
    c, y = _cascade(), torch.tensor([1, 2, 3, 4])
    trainer._prepare(c, y)
    got = trainer._take_prepared(c, y)
    assert len(got) == 2 and trainer.prepared_used == 1
    assert trainer._take_prepared(c, y) == []  # never twice


def test_prepared_headers_are_dropped_for_another_cascade_other_labels_or_when_old(
        trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    c, y = _cascade(), torch.tensor([1, 2, 3, 4])
    trainer._prepare(c, y)
    assert trainer._take_prepared(_cascade(port=50), y) == []  # a replacement cascade: built afresh
    trainer._prepare(c, y)
    c.sessions[c.entries[0].address] = bytes(32)  # same servers, another session: headers keyed to the old one
    assert trainer._take_prepared(c, y) == []
    c = _cascade()
    trainer._prepare(c, y)
    assert trainer._take_prepared(c, torch.tensor([4, 3, 2, 1])) == []  # not the batch they were built for
    trainer._prepare(c, y)
    clock = trainer_mod.time.monotonic
    monkeypatch.setattr(trainer_mod.time, "monotonic", lambda: clock() + trainer_mod.PREPARED_MAX_AGE_S + 1)
    assert trainer._take_prepared(c, y) == []  # aged: its replay window could be stale at the hops
    assert trainer.prepared_used == 0
