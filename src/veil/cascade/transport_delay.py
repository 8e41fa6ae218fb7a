"""A transport wrapper that emulates a link's one-way delay: each received packet is held for ``delay`` seconds
before the receiver sees it.

Why: the machines this project runs on accept ``tc`` rate limiting (``tbf``/``htb``) but their kernel has no
``netem``, so link *delay* cannot come from the kernel. Holding every packet at the receiving end for the link's
one-way delay is what propagation does: the sender's ``push`` still returns once the packet is handed to the
network (and still fails at once on an address nobody listens on, so crash detection behaves as on a real link),
and packets are released in arrival order, each ``delay`` after it arrived (a constant delay never reorders).
The delay is measured from the moment the inner transport hands the packet over, so queueing in the kernel
(``tbf`` at the link's rate) and serialisation come on top, as on a real link. Every hold is timed against its
target (``stats``: packets, mean and largest overshoot beyond the due time or, when the receiver was still busy with the
previous packet, beyond the moment it was free: that wait is queueing, as on a real host), so a benchmark can show
the emulation's accuracy.
"""

from __future__ import annotations

import collections
import ctypes
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from veil.cascade import constants as C
from veil.cascade.sending import OnPacket
from veil.errors import VeilError

if TYPE_CHECKING:  # transport builds this wrapper by name: a runtime import back would be a cycle
    from veil.cascade.transport import Listener, Transport

_PR_SET_TIMERSLACK = 29  # linux/prctl.h


def _fine_timer_slack() -> None:
    """Ask Linux for 1 ns timer slack in this thread (default 50 us): a held 0.25 ms delay then overshoots by ~20 us
    instead of ~70 us (median, measured here). Best effort: elsewhere the default slack stays."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class HoldStats:
    """How late the holder released packets compared with arrival + delay (seconds), across all its listeners."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.packets = 0
        self.late_sum = 0.0
        self.late_max = 0.0

    def add(self, late: float) -> None:
        with self._lock:
            self.packets += 1
            self.late_sum += late
            self.late_max = max(self.late_max, late)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            mean = self.late_sum / self.packets if self.packets else 0.0
            return {"packets": self.packets, "late_mean_s": mean, "late_max_s": self.late_max}


class DelayedListener:
    """Wraps a listener: its packets go into a FIFO with their due time; one thread releases each when due."""

    serial = True  # one releasing thread, in arrival order

    def __init__(self, inner_factory: Callable[[OnPacket], Listener], on_packet: OnPacket, delay: float,
                 stats: HoldStats) -> None:
        self._on_packet = on_packet
        self._delay = delay
        self._stats = stats
        self._fifo: collections.deque[tuple[float, bytes]] = collections.deque()
        self._cv = threading.Condition()
        self._running = False
        self._inner = inner_factory(self._arrived)
        self.address = self._inner.address
        self._thread = threading.Thread(target=self._release, name="cascade-link-delay", daemon=True)

    def _arrived(self, packet: bytes) -> None:
        with self._cv:
            self._fifo.append((time.monotonic() + self._delay, packet))
            self._cv.notify()

    def _release(self) -> None:
        _fine_timer_slack()
        free_at = 0.0  # when the receiver finished the previous packet: waiting for it is queueing, not error
        while True:
            with self._cv:
                while self._running and not self._fifo:
                    self._cv.wait()
                if not self._running:
                    return
                due, packet = self._fifo[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(timeout=wait)  # a new arrival wakes us early: it is due later, so loop
                    continue
                self._fifo.popleft()
            self._stats.add(time.monotonic() - max(due, free_at))
            self._on_packet(packet)
            free_at = time.monotonic()

    def start(self) -> None:
        self._running = True
        self._thread.start()
        self._inner.start()

    def stop(self) -> None:
        self._inner.stop()
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class DelayedTransport:
    """``inner`` with every packet it receives held for ``delay`` seconds (the one-way delay of the link into this
    host). Sending is the inner transport's, unchanged; the name is the inner one's, so pool entries still match."""

    def __init__(self, inner: Transport, delay: float) -> None:
        if not 0 <= delay <= 10:
            raise VeilError(f"link delay {delay} s out of range (0 to 10 s)")
        self.inner = inner
        self.delay = delay
        self.name = inner.name
        self.stats = HoldStats()
        self._listeners: list[DelayedListener] = []

    def listen(self, address: str, on_packet: OnPacket) -> Listener:
        lst = DelayedListener(lambda cb: self.inner.listen(address, cb), on_packet, self.delay, self.stats)
        self._listeners.append(lst)
        return lst

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None:
        self.inner.push(address, packet, timeout)

    def send(self, address: str, packet: bytes, on_error: Callable[[str], None] | None = None,
             timeout: float = C.SEND_TIMEOUT_S) -> None:
        self.inner.send(address, packet, on_error, timeout)

    def close(self) -> None:
        for lst in self._listeners:
            lst.stop()
        self.inner.close()
