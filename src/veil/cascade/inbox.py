"""The designer's endpoint: its receiving socket, its round trips, and the crash time bound.

The designer is the last hop of every packet it sends (a "loop message to itself", paper section 2.2), so
replies come back in the same onion format. Its own slot is always built in session mode under a secret only
it holds, so the inbox accepts nothing that the designer did not build itself. Roles (deployment, trainer,
recovery, selection) send through ``Inbox.trip``/``push`` and never touch sockets; the transport is injected.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from veil.cascade import constants as C
from veil.cascade import transport as transport_mod
from veil.cascade.keys import HopKeys
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_header, build_packet, seal_packet
from veil.cascade.routing import Routing
from veil.errors import VeilError


class CrashDetected(VeilError):
    """No response within the time bound T, or the first hop could not be reached."""


@dataclass(frozen=True)
class Route:
    """A trip's header, built ahead of its body: first hop, header, every hop's keys, reply tag, op."""

    first: str
    header: bytes
    keys: list[HopKeys]
    tag: bytes
    op: int


@dataclass
class TimeBound:
    """``T = max(floor, margin * (n*delta + (n+1)*t))`` from the measured loop latency ``t`` per hop and the
    largest observed processing time ``delta`` per hop beyond it (paper section 4.1)."""

    floor: float = 2.0
    margin: float = 10.0
    hops: int = 1
    loop_rtt: float = 0.0
    max_rtt: float = 0.0

    def seconds(self) -> float:
        n = max(self.hops, 1)
        t = self.loop_rtt / (n + 1)
        delta = max(0.0, (self.max_rtt - self.loop_rtt) / n)
        return max(self.floor, self.margin * (n * delta + (n + 1) * t))


@dataclass
class LoopStats:
    sent: int = 0
    returned: int = 0
    lost: int = 0
    pending: set[bytes] = field(default_factory=set)


class Inbox:
    """Receives the designer's replies and cover traffic; sends round trips of the run's one packet size."""

    def __init__(self, transport: transport_mod.Transport, cell: int, listen: str = "127.0.0.1:0") -> None:
        self.transport = transport
        self.cell = cell
        self._peeler = Peeler()
        self._secret = os.urandom(C.SESSION_SECRET_SIZE)
        self._peeler.bind(self._secret)
        self._cv = threading.Condition()
        self._awaiting: set[bytes] = set()
        self._replies: dict[bytes, bytes] = {}
        self.loops = LoopStats()
        self.rejected: list[str] = []
        self.slow: list[dict[str, float | str]] = []  # missed time bounds that a liveness check found not a crash
        self.timing: dict[str, float] = {"pack": 0.0, "wait": 0.0}
        self.on_packet_hook: Callable[[bytes], None] | None = None  # observers (tests): every packet received
        self.on_send_hook: Callable[[bytes], None] | None = None  # observers (tests): every packet sent
        self._listener = transport.listen(listen, self._on_packet)
        self._listener.start()
        self.hop = Hop(self._listener.address, self._peeler.public_key, self._secret)

    def close(self) -> None:
        self._listener.stop()

    # --- receiving ------------------------------------------------------------------------------------------
    def _on_packet(self, packet: bytes) -> None:
        if self.on_packet_hook is not None:
            self.on_packet_hook(packet)
        try:
            p = self._peeler.peel(packet)
        except PacketRejected as exc:
            self.rejected.append(str(exc))
            return
        if not p.session or not p.routing.is_final:
            self.rejected.append("packet for the designer not built by it, or not marked final")
            return
        with self._cv:
            tag = p.routing.tag
            if tag in self.loops.pending:
                self.loops.pending.discard(tag)
                self.loops.returned += 1
            elif tag in self._awaiting:
                self._replies[tag] = p.body
                self._cv.notify_all()

    # --- sending --------------------------------------------------------------------------------------------
    def route(self, path: list[Hop], routes: list[Routing]) -> Route:
        """The header of a trip along ``path`` + designer, built before (and apart from) its body."""
        t0 = time.perf_counter()
        tag = os.urandom(C.STEP_TAG_SIZE)
        op = routes[0].op
        header, keys = build_header(path + [self.hop], routes + [Routing(op=op, tag=tag)], self.cell)
        self.timing["pack"] += time.perf_counter() - t0
        return Route(path[0].address, header, keys, tag, op)

    def push(self, route: Route, body: bytes, timeout: float = C.SEND_TIMEOUT_S) -> bytes:
        """Seal ``body`` under ``route`` and send it; the reply will be kept for ``wait``. Returns the tag."""
        t0 = time.perf_counter()
        pkt = seal_packet(route.keys[0].payload, route.header, body, self.cell)
        self.timing["pack"] += time.perf_counter() - t0
        with self._cv:
            self._awaiting.add(route.tag)
        if self.on_send_hook is not None:
            self.on_send_hook(pkt)
        try:
            self.transport.push(route.first, pkt, timeout=timeout)
        except VeilError as exc:
            self.forget([route.tag])
            raise CrashDetected(f"first hop unreachable: {exc}") from None
        return route.tag

    def wait(self, tags: Iterable[bytes], timeout: float, what: str = "reply",
             confirm: Callable[[], bool] | None = None) -> tuple[bytes, bytes]:
        """The first reply among ``tags`` (tag, body); CrashDetected when none arrives within ``timeout``.

        With ``confirm`` (a liveness check of the servers on the way), a missed bound is a crash only if the
        check fails too; if every server answers, the machine was slow, not a server dead: the event is counted
        in ``slow`` and the wait goes on for up to the set-up bound (then it is a crash after all: a live server
        lost the packet)."""
        wanted = set(tags)
        t0 = time.perf_counter()
        with self._cv:
            ok = self._cv.wait_for(lambda: any(t in self._replies for t in wanted), timeout=timeout)
        if not ok and confirm is not None and confirm():
            self.slow.append({"what": what, "bound_s": timeout, "waited_s": time.perf_counter() - t0})
            with self._cv:
                ok = self._cv.wait_for(lambda: any(t in self._replies for t in wanted),
                                       timeout=max(timeout, C.SETUP_TIMEOUT_S))
        with self._cv:
            if not ok:
                raise CrashDetected(f"no {what} response within T = {timeout:.2f} s")
            tag = next(t for t in wanted if t in self._replies)
            self._awaiting.discard(tag)
            body = self._replies.pop(tag)
        self.timing["wait"] += time.perf_counter() - t0
        return tag, body

    def forget(self, tags: Iterable[bytes]) -> None:
        with self._cv:
            for t in tags:
                self._awaiting.discard(t)
                self._replies.pop(t, None)

    def trip(self, route: Route, body: bytes, timeout: float, during: Callable[[], None] | None = None,
             confirm: Callable[[], bool] | None = None) -> tuple[bytes, float]:
        """Send, run ``during`` (designer-side work overlapping the cascade's), wait (``confirm``: see ``wait``):
        (reply, round-trip s)."""
        t0 = time.perf_counter()
        tag = self.push(route, body, timeout=min(timeout, C.SEND_TIMEOUT_S))
        try:
            if during is not None:
                during()
            _, reply = self.wait([tag], max(0.0, timeout - (time.perf_counter() - t0)), C.OPS[route.op], confirm)
        finally:
            self.forget([tag])
        return reply, time.perf_counter() - t0

    # --- cover traffic --------------------------------------------------------------------------------------
    def build_loops(self, hops: list[Hop], k: int, rng) -> list[tuple[str, bytes, bytes]]:  # noqa: ANN001
        """(first address, packet, tag) of ``k`` loop messages over 1-3 random ``hops``."""
        loops = []
        for _ in range(k if hops else 0):
            path = rng.sample(hops, rng.randint(1, min(3, len(hops))))
            tag = os.urandom(C.STEP_TAG_SIZE)
            pkt, _ = build_packet(path + [self.hop], [Routing(op=C.OP_LOOP)] * len(path)
                                  + [Routing(op=C.OP_LOOP, tag=tag)], os.urandom(64), self.cell)
            loops.append((path[0].address, pkt, tag))
        return loops

    def send_loops(self, loops: list[tuple[str, bytes, bytes]]) -> None:
        """Hand prepared loop packets to the transport without waiting: cover traffic never blocks a step."""
        for first, pkt, tag in loops:
            with self._cv:
                self.loops.pending.add(tag)

            def lost(_reason: str, tag: bytes = tag) -> None:
                with self._cv:
                    self.loops.pending.discard(tag)
                    self.loops.lost += 1

            try:
                self.transport.send(first, pkt, on_error=lost, timeout=2.0)
                self.loops.sent += 1
            except (VeilError, ValueError, RuntimeError):
                lost("")
