"""The designer (client) as one front door over its roles: inbox, selection, deployment, trainer, recovery.

Only the designer knows the whole model, the cascade's order, every address and every session secret; it
alone builds headers. Each role lives in its own module and takes what it needs (the transport, the inbox,
the time bound) as objects, so a role can be replaced or tested alone:

- ``inbox``      the receiving endpoint, round trips, the crash bound T, cover traffic
- ``selection``  which live, free servers form the cascade (dead or busy ones skipped and replaced)
- ``deployment`` phase 0 (layers + per-node session secrets), checkpoints, release
- ``trainer``    phases 1-3, GPipe-style micro-batches
- ``recovery``   the run: crash and Byzantine handling, replacement, resume

``Designer.attach(cascade)`` joins a cascade deployed by another designer process (its description with
session secrets, as ``veil cascade train`` writes to the 0600 ``cascade.json``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import message, recovery
from veil.cascade import pool as pool_mod
from veil.cascade import transport as transport_mod
from veil.cascade.checkpoint import Checkpoint
from veil.cascade.deployment import DUMMY_SPEC, SETUP_TIMEOUT_S, ByzantineDetected, Deployment
from veil.cascade.inbox import CrashDetected, Inbox, TimeBound
from veil.cascade.models import ModelSpec, build_all, layer_state
from veil.cascade.recovery import TrainResult
from veil.cascade.selection import Cascade, select
from veil.cascade.trainer import Trainer
from veil.errors import VeilError

__all__ = ["DUMMY_SPEC", "SETUP_TIMEOUT_S", "ByzantineDetected", "Cascade", "CrashDetected", "Designer",
           "TrainResult", "largest_message"]


class Designer:
    """Client side of MixNN. Use as a context manager: its inbox is stopped and its cascade released."""

    def __init__(self, pool: str | Path, spec: ModelSpec, *, dummies: int = 1, seed: int = 0,
                 listen: str = "127.0.0.1:0", loop_rate: int = 1, checkpoint_every: int | None = None,
                 timeout_floor: float = 2.0, timeout_margin: float = 10.0, min_accuracy: float | None = None,
                 max_replacements: int = 3, keep_loss: bool = False, select_seed: int | None = None,
                 cell: int | None = None, microbatches: int = 1,
                 transport: transport_mod.Transport | str | None = None, release_on_close: bool = True) -> None:
        if dummies < 0 or loop_rate < 0:
            raise VeilError("dummies and loop_rate must be >= 0")
        if spec.batch > C.MAX_LABELS:
            raise VeilError(f"batch {spec.batch} exceeds the {C.MAX_LABELS} labels one header slot carries")
        self.pool_path = Path(pool)
        self.spec = spec
        self.seed = seed
        self.dummies = dummies
        self.loop_rate = loop_rate
        self.checkpoint_every = checkpoint_every
        self.min_accuracy = min_accuracy
        self.max_replacements = max_replacements
        self.microbatches = microbatches
        self.release_on_close = release_on_close
        self.keep_loss = keep_loss and spec.layers[-1]["kind"] == "nll"
        # layers the cascade runs: everything, or everything but the loss when the designer keeps it
        self.remote_layers = list(range(len(spec.layers) - (1 if self.keep_loss else 0)))
        self._rng = random.Random(select_seed if select_seed is not None else int.from_bytes(os.urandom(8), "big"))
        self.initial = Checkpoint(step=0, verified=True, states={
            i: layer_state(m, None) for i, m in enumerate(build_all(spec, seed)) if i in self.remote_layers})
        # the run's one packet size: chosen here, before any packet exists, and used for every packet
        if cell is not None and cell not in C.CELL_SIZES:
            raise VeilError(f"cell {cell} is not one of the packet size classes {C.CELL_SIZES}")
        self.cell = cell or C.cell_for(largest_message(spec, microbatches))
        self.packet_size = C.packet_size(self.cell)
        self.transport = (transport if transport is not None and not isinstance(transport, str)
                          else transport_mod.make(transport or C.DEFAULT_TRANSPORT))
        self.bound = TimeBound(floor=timeout_floor, margin=timeout_margin)
        self.inbox = Inbox(self.transport, self.cell, listen)
        self.hop = self.inbox.hop
        self.deployment = Deployment(self.inbox, spec, self.bound)
        self.trainer = Trainer(self.inbox, spec, self.bound, microbatches=microbatches, keep_loss=self.keep_loss,
                               loop_rate=loop_rate, rng=self._rng)
        self.excluded: set[str] = set()
        self.cascade: Cascade | None = None
        self.events: list[dict[str, Any]] = []

    # --- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> Designer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the cascade (unless ``release_on_close`` is off), then stop the inbox and the transport."""
        try:
            if self.release_on_close and self.cascade is not None and (self.cascade.bound or self.cascade.attempted):
                self.deployment.release(self.cascade)
        finally:
            self.inbox.close()
            self.transport.close()

    # --- counters kept for callers of the single-class designer ---------------------------------------------
    @property
    def loops_sent(self) -> int:
        return self.inbox.loops.sent

    @property
    def loops_returned(self) -> int:
        return self.inbox.loops.returned

    @property
    def loops_lost(self) -> int:
        return self.inbox.loops.lost

    @property
    def rejected(self) -> list[str]:
        return self.inbox.rejected

    def timeout(self) -> float:
        """The crash bound T for one trip through the cascade."""
        return self.bound.seconds()

    # --- selection and deployment ---------------------------------------------------------------------------
    def _pool_hops(self) -> list:
        entries = [e for e in pool_mod.load(self.pool_path)
                   if e.address not in self.excluded and e.transport == self.transport.name]
        cascade = self.cascade
        if cascade is None:
            return [e.hop for e in entries]
        bound = {e.address for e in cascade.entries}
        return [cascade.hop(e) if e.address in bound else e.hop for e in entries]

    def select(self) -> Cascade:
        """n = p + r live servers drawn at random from the pool, dummies at random positions between layers."""
        return select(self.inbox, self.pool_path, self.remote_layers, self.dummies, self._rng, self.excluded,
                      self.events)

    def attach(self, cascade: Cascade) -> float:
        """Use a cascade deployed earlier (e.g. by ``veil cascade train``) instead of selecting one: its
        description must carry the session secrets. Checks it answers; returns the loop latency."""
        if any(e.address not in cascade.bound for e in cascade.entries):
            raise VeilError("the cascade description has no session secret for some servers (was it released?)")
        self.cascade = cascade
        return self.measure_latency()

    def measure_latency(self) -> float:
        assert self.cascade is not None
        return self.deployment.measure_latency(self.cascade)

    def deploy(self, ckpt: Checkpoint) -> None:
        assert self.cascade is not None
        self.deployment.deploy(self.cascade, ckpt)

    def setup(self, ckpt: Checkpoint | None = None) -> Cascade:
        """Select a cascade, measure its latency, deploy the layers (from ``ckpt`` or the initial weights)."""
        self.cascade = self.select()
        self.bound.max_rtt = 0.0
        self.measure_latency()
        self.deploy(ckpt or self.initial)
        self.trainer.loop_hops = self._pool_hops()
        self.events.append({"event": "deployed", "step": (ckpt or self.initial).step,
                            "servers": [e.address for e in self.cascade.entries]})
        return self.cascade

    def servers(self) -> list[str]:
        """Addresses of the cascade in use (empty before the first ``setup``)."""
        return [e.address for e in self.cascade.entries] if self.cascade is not None else []

    def release(self) -> list[str]:
        """Give up the cascade in use: its servers drop the layer and session, and are never selected again."""
        old = self.servers()
        if self.cascade is not None:
            self.excluded |= set(old)
            self.deployment.release(self.cascade, wait=0.5)
        return old

    def policy(self) -> recovery.RecoveryPolicy:
        return recovery.RecoveryPolicy(self.min_accuracy, self.max_replacements, self.checkpoint_every or 0)

    def replace(self, reason: str, ckpt: Checkpoint) -> None:
        recovery.replace(self, self.policy(), self.events, reason, ckpt)

    def fetch_state(self, step: int) -> Checkpoint:
        assert self.cascade is not None
        stateful = {i for i, s in self.initial.states.items() if s}
        return self.deployment.fetch_state(self.cascade, self.remote_layers, stateful, step)

    # --- phases ---------------------------------------------------------------------------------------------
    def send_loops(self, k: int | None = None) -> None:
        """Cover traffic: loop messages over random pool servers back to the designer, not waited for."""
        hops = self._pool_hops()
        self.inbox.send_loops(self.inbox.build_loops(hops, self.loop_rate if k is None else k, self._rng))

    def step(self, x: torch.Tensor, y: torch.Tensor, upcoming: torch.Tensor | None = None) -> float:
        """One training step; ``upcoming`` (the next batch's labels) lets its headers be built during this one."""
        assert self.cascade is not None
        return self.trainer.step(self.cascade, x, y, upcoming)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        assert self.cascade is not None
        return self.trainer.predict(self.cascade, x)

    def test(self, x: torch.Tensor, y: torch.Tensor) -> float:
        assert self.cascade is not None
        return self.trainer.test(self.cascade, x, y)

    def train(self, ds: D.Dataset, epochs: int,
              on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
        """Train for ``epochs``, recovering from crashes and Byzantine servers; returns metrics and events."""
        res = recovery.train(self, self.policy(), ds, epochs, self.spec.batch, self.seed, self.events, on_step)
        res.events += [{"event": "slow", **s} for s in self.inbox.slow]
        return res


def largest_message(spec: ModelSpec, microbatches: int = 1) -> int:
    """Bytes of the largest body a forward, backward or test packet of this model carries.

    Walks the layer widths (the input, every layer's output and so every gradient) and encodes a zero batch
    of each, so the figure is the real framed size, not an estimate; a small margin covers meta variations.
    With m micro-batches every packet (the test phase's too) carries at most ceil(batch / m) samples, so the
    run's packet class can be smaller.
    """
    first = next((int(layer["in"]) for layer in spec.layers if layer.get("kind") == "linear"), None)
    if first is None:  # no layer fixes a width: fall back to the default class
        return C.body_capacity(C.DEFAULT_CELL)
    widths, width = [first], first
    for layer in spec.layers:
        if layer.get("kind") == "linear":
            width = int(layer["out"])
            widths.append(width)
    rows = -(-spec.batch // microbatches)
    return max(len(message.encode({}, {"x": torch.zeros(rows, w)})) for w in set(widths)) + 256
