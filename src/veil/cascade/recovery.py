"""Recovery: the whole training run, with crash and Byzantine handling (paper section 4).

- crash: every round trip has the time bound T (``inbox.TimeBound``); past it, or when the first hop cannot
  be reached, the whole cascade is replaced (the designer cannot tell which server failed), the layers are
  re-initialised from the last checkpoint and training resumes from that step. Batch order depends only on
  (seed, step), so the resumed run is the run that would have happened.
- Byzantine: at each epoch's test phase the held-out accuracy must reach ``min_accuracy``; if not, the
  cascade is replaced and training resumes from the last checkpoint that passed this check.

Why a policy over a protocol: recovery sees the run only through :class:`CascadeRun` (set up, step, test,
fetch state, release) and its settings as a :class:`RecoveryPolicy`, as Flower's strategies see a client
manager and typed results rather than the server, so it can be tested, and replaced, without a network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from veil.cascade import data as D
from veil.cascade.checkpoint import Checkpoint
from veil.cascade.deployment import ByzantineDetected
from veil.cascade.inbox import CrashDetected
from veil.errors import VeilError


class CascadeRun(Protocol):
    """What recovery drives: a run on some cascade of servers (the :class:`~veil.cascade.designer.Designer`)."""

    @property
    def initial(self) -> Checkpoint:
        """The layers' initial weights (step 0), where a run starts and a first failure resumes."""

    def servers(self) -> list[str]:
        """Addresses of the cascade in use (empty before the first ``setup``)."""

    def setup(self, ckpt: Checkpoint | None = None) -> object:
        """Select a fresh cascade and deploy the layers from ``ckpt`` (the initial weights if None)."""

    def step(self, x: torch.Tensor, y: torch.Tensor, upcoming: torch.Tensor | None = None) -> float:
        """One training step through the cascade; its loss. Raises CrashDetected past the time bound.
        ``upcoming``: the next step's labels (its headers may be built while this step's backwards travel)."""

    def test(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Held-out accuracy of the deployed layers."""

    def fetch_state(self, step: int) -> Checkpoint:
        """The layers' state after ``step`` steps (a checkpoint, not yet verified)."""

    def release(self) -> list[str]:
        """Give up the cascade in use: release its servers and never select them again; their addresses."""


@dataclass(frozen=True)
class RecoveryPolicy:
    """When to checkpoint, what accuracy a test phase must reach, and how many replacements to allow."""

    min_accuracy: float | None = None
    max_replacements: int = 3
    checkpoint_every: int = 0  # steps; 0: once per epoch


@dataclass
class TrainResult:
    accuracy: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    final: Checkpoint | None = None


def replace(run: CascadeRun, policy: RecoveryPolicy, events: list[dict[str, Any]], reason: str,
            ckpt: Checkpoint) -> None:
    """Swap every server for fresh ones (the designer cannot locate the faulty one) and redeploy."""
    for attempt in range(policy.max_replacements + 1):
        if len([e for e in events if e["event"] == "replaced"]) >= policy.max_replacements:
            raise VeilError(f"gave up after {policy.max_replacements} cascade replacements ({reason})")
        old = run.release()  # survivors drop the old layer and session
        events.append({"event": "replaced", "reason": reason, "resume_step": ckpt.step, "old": old})
        try:
            run.setup(ckpt)
            return
        except CrashDetected as exc:
            reason = f"{exc} (during replacement attempt {attempt + 1})"
    raise VeilError(f"gave up after {policy.max_replacements} cascade replacements ({reason})")


def train(run: CascadeRun, policy: RecoveryPolicy, ds: D.Dataset, epochs: int, batch: int, seed: int,
          events: list[dict[str, Any]], on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train for ``epochs`` in batches of ``batch`` (order set by ``seed``), recovering from crashes and
    Byzantine servers; events go to ``events`` (the run's log). Returns metrics and a copy of the events."""
    if not run.servers():
        run.setup()
    spe = D.steps_per_epoch(len(ds.x_train), batch)
    total, every = epochs * spe, policy.checkpoint_every or spe
    res = TrainResult()
    last, verified = run.initial, run.initial
    step, epoch_t0 = 0, time.perf_counter()
    elapsed = 0.0
    while step < total:
        try:
            x, y = D.batch_at(ds, batch, seed, step)
            loss = run.step(x, y, D.batch_at(ds, batch, seed, step + 1)[1] if step + 1 < total else None)
            step += 1
            res.losses.append(loss)
            if on_step:
                on_step(step, total, loss)
            end_epoch = step % spe == 0
            if end_epoch:
                elapsed += time.perf_counter() - epoch_t0
                res.epoch_seconds.append(elapsed)
            if step % every == 0 or end_epoch:
                last = run.fetch_state(step)
            if end_epoch and policy.min_accuracy is not None:
                acc = run.test(ds.x_test, ds.y_test)
                res.epoch_accuracy.append(acc)
                if acc < policy.min_accuracy:
                    events.append({"event": "byzantine", "step": step, "accuracy": acc, "servers": run.servers()})
                    raise ByzantineDetected(f"test accuracy {acc:.3f} below {policy.min_accuracy}")
                last.verified = True
                verified = last
            if end_epoch:
                epoch_t0, elapsed = time.perf_counter(), 0.0
        except CrashDetected as exc:
            events.append({"event": "crash", "step": step, "detail": str(exc)})
            replace(run, policy, events, str(exc), last)
            step = _rewind(last, spe, res)
            epoch_t0, elapsed = time.perf_counter(), 0.0
        except ByzantineDetected as exc:
            last = verified
            replace(run, policy, events, str(exc), verified)
            step = _rewind(verified, spe, res)
            epoch_t0, elapsed = time.perf_counter(), 0.0
    res.final = last if last.step == total else run.fetch_state(total)
    res.accuracy = run.test(ds.x_test, ds.y_test)
    res.events = list(events)
    return res


def _rewind(ckpt: Checkpoint, spe: int, res: TrainResult) -> int:
    """Drop per-epoch records after the checkpoint's epoch; the resumed run redoes them."""
    done_epochs = ckpt.step // spe
    del res.epoch_seconds[done_epochs:]
    del res.losses[ckpt.step :]
    del res.epoch_accuracy[done_epochs:]
    return ckpt.step
