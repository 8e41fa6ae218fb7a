"""Concurrent calls fused into one batch call: the group commit, the RecNet forward and the gallery product share it.

Why: under 16 concurrent enrols (issue 25) the server spent much of its core on per-call cost, not on work:
each request was its own RecNet forward of two rows (a feature row and its mirror: 1.8 ms of CPU on one
thread, against 10.3 ms for 32 rows, so most of it is per-call cost), its own matrix product over the whole
gallery for identify (the 100,000 x 128 matrix is read from memory for a single probe: ~3.6 ms), and its own
transaction. A :class:`Coalescer` runs whatever is queued as one call: the caller that finds it idle becomes
the leader, takes the items queued meanwhile (up to ``max_size`` rows) and runs the batch function once; the
others wait for their own result. A lone request runs at once (no window, no timer), so sequential latency
is unchanged; under load the batch grows by itself to what arrived during the previous call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Coalescer(Generic[T, R]):
    """``coalescer(item)`` returns ``run(items)[i]`` for its item, ``run`` having been called on a batch of items.

    ``run`` must return one result per item, in order. A result that is an exception is raised to
    that item's caller only (a refused name in a group commit); an exception raised by ``run``
    reaches every caller of the batch, so none waits for ever. ``calls`` counts the batch calls
    (the tests check that concurrent callers share them). A batch holds items while their ``size`` (rows,
    say) adds up to at most ``max_size``, and always at least one item.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R | BaseException]], max_size: int = 64,
                 size: Callable[[T], int] = lambda item: 1) -> None:
        self._run, self.max_size, self._size = run, max_size, size
        self._lock = threading.Lock()  # held by the leader while it runs a batch
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending[T, R]] = []
        self.calls = 0

    def __call__(self, item: T) -> R:
        pending: _Pending[T, R] = _Pending(item)
        with self._queue_lock:
            self._queue.append(pending)
        while not pending.done:
            with self._lock:
                if pending.done:
                    break
                self._execute(self._take())
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _take(self) -> list[_Pending[T, R]]:
        """The oldest queued items whose sizes add up to at most ``max_size`` (at least one), off the queue."""
        with self._queue_lock:
            take, total = 0, 0
            while take < len(self._queue):
                total += self._size(self._queue[take].item)
                if take and total > self.max_size:
                    break
                take += 1
            batch, self._queue = self._queue[:take], self._queue[take:]
        return batch

    def _execute(self, batch: list[_Pending[T, R]]) -> None:
        self.calls += 1
        try:
            results = list(self._run([p.item for p in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiter of the batch gets the failure, none hangs
            for p in batch:
                p.error, p.done = exc, True
            return
        for p, r in zip(batch, results, strict=True):
            if isinstance(r, BaseException):
                p.error = r
            else:
                p.result = r
            p.done = True
