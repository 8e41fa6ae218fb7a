"""Recovery: the whole training run, with crash and Byzantine handling (paper section 4).

- crash: every round trip has the time bound T (``inbox.TimeBound``); past it, or when the first hop cannot
  be reached, the whole cascade is replaced (the designer cannot tell which server failed), the layers are
  re-initialised from the last checkpoint and training resumes from that step. Batch order depends only on
  (seed, step), so the resumed run is the run that would have happened.
- Byzantine: at each epoch's test phase the held-out accuracy must reach ``min_accuracy``; if not, the
  cascade is replaced and training resumes from the last checkpoint that passed this check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veil.cascade import data as D
from veil.cascade.checkpoint import Checkpoint
from veil.cascade.deployment import ByzantineDetected
from veil.cascade.inbox import CrashDetected
from veil.errors import VeilError

if TYPE_CHECKING:
    from veil.cascade.designer import Designer


@dataclass
class TrainResult:
    accuracy: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    final: Checkpoint | None = None


def replace(des: Designer, reason: str, ckpt: Checkpoint) -> None:
    """Swap every server for fresh ones (the designer cannot locate the faulty one) and redeploy."""
    for attempt in range(des.max_replacements + 1):
        if len([e for e in des.events if e["event"] == "replaced"]) >= des.max_replacements:
            raise VeilError(f"gave up after {des.max_replacements} cascade replacements ({reason})")
        old = [e.address for e in des.cascade.entries] if des.cascade else []
        if des.cascade is not None:
            des.excluded |= set(old)
            des.deployment.release(des.cascade, wait=0.5)  # survivors drop the old layer and session
        des.events.append({"event": "replaced", "reason": reason, "resume_step": ckpt.step, "old": old})
        try:
            des.setup(ckpt)
            return
        except CrashDetected as exc:
            reason = f"{exc} (during replacement attempt {attempt + 1})"
    raise VeilError(f"gave up after {des.max_replacements} cascade replacements ({reason})")


def train(des: Designer, ds: D.Dataset, epochs: int,
          on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train for ``epochs``, recovering from crashes and Byzantine servers; returns metrics and events."""
    if des.cascade is None:
        des.setup()
    spe = D.steps_per_epoch(len(ds.x_train), des.spec.batch)
    total, every = epochs * spe, des.checkpoint_every or spe
    res = TrainResult()
    last, verified = des.initial, des.initial
    step, epoch_t0 = 0, time.perf_counter()
    elapsed = 0.0
    while step < total:
        try:
            x, y = D.batch_at(ds, des.spec.batch, des.seed, step)
            loss = des.step(x, y)
            step += 1
            res.losses.append(loss)
            if on_step:
                on_step(step, total, loss)
            end_epoch = step % spe == 0
            if end_epoch:
                elapsed += time.perf_counter() - epoch_t0
                res.epoch_seconds.append(elapsed)
            if step % every == 0 or end_epoch:
                last = des.fetch_state(step)
            if end_epoch and des.min_accuracy is not None:
                acc = des.test(ds.x_test, ds.y_test)
                res.epoch_accuracy.append(acc)
                if acc < des.min_accuracy:
                    des.events.append({"event": "byzantine", "step": step, "accuracy": acc,
                                       "servers": [e.address for e in des.cascade.entries] if des.cascade else []})
                    raise ByzantineDetected(f"test accuracy {acc:.3f} below {des.min_accuracy}")
                last.verified = True
                verified = last
            if end_epoch:
                epoch_t0, elapsed = time.perf_counter(), 0.0
        except CrashDetected as exc:
            des.events.append({"event": "crash", "step": step, "detail": str(exc)})
            replace(des, str(exc), last)
            step = _rewind(last, spe, res)
            epoch_t0, elapsed = time.perf_counter(), 0.0
        except ByzantineDetected as exc:
            last = verified
            replace(des, str(exc), verified)
            step = _rewind(verified, spe, res)
            epoch_t0, elapsed = time.perf_counter(), 0.0
    res.final = last if last.step == total else des.fetch_state(total)
    res.accuracy = des.test(ds.x_test, ds.y_test)
    res.events = list(des.events) + [{"event": "slow", **s} for s in des.inbox.slow]
    return res


def _rewind(ckpt: Checkpoint, spe: int, res: TrainResult) -> int:
    """Drop per-epoch records after the checkpoint's epoch; the resumed run redoes them."""
    done_epochs = ckpt.step // spe
    del res.epoch_seconds[done_epochs:]
    del res.losses[ckpt.step :]
    del res.epoch_accuracy[done_epochs:]
    return ckpt.step
