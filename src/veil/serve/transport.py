"""How connections reach the app: an admission gate at ``accept``, TLS with a short handshake deadline, then
uvicorn's HTTP/1.1 protocol with a header deadline: a connection that does not finish its request line
and headers within ``header_timeout`` seconds is closed.

Why: uvicorn closes idle keep-alive connections, but not one that has sent *part* of a request, so
1,100 half-sent requests held 1,100 descriptors and ``/health`` timed out (issue 12, finding 3). The
deadline runs from the moment the server starts waiting for a request (connection made, or the
previous response sent) and is not reset by trickled bytes; the body has its own deadline in the
app (:func:`veil.serve.app.read_capped`), and uvicorn's ``limit_concurrency`` caps connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from veil.serve.ratelog import limited_warning


class GuardedH11Protocol(H11Protocol):
    """H11Protocol that closes a connection which leaves a request's head unfinished for too long."""

    header_timeout: float = 10.0
    on_lost: Callable[[], None] | None = None  # the gate's release of this connection's slot
    _made = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        self._made = True
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._expire, self.cycle)

    def _disarm(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._head_deadline = None

    def _expire(self, waiting_cycle: object) -> None:
        self._head_deadline = None
        # Still no new request since the deadline was armed, and h11 still waits for one's head.
        if self.cycle is waiting_cycle and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        release, self.on_lost = self.on_lost, None
        if release is not None:
            release()
        if not self._made:  # lost between the TLS handshake and its hand-over
            return
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class with its own deadline (uvicorn takes a class, not an instance)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": float(header_timeout)})


# --- Admission before anything else (issue 24, finding 1) -------------------------------------------------
#
# uvicorn counts a connection only once its protocol's ``connection_made`` runs, which with TLS is
# after the handshake (60 s by default); 1,100 sockets that never sent a ClientHello therefore sat
# outside every cap and deadline, and with plain HTTP the cap answered 503 while keeping each socket,
# until ``accept`` failed with EMFILE. The gate below runs at ``accept``: it refuses a connection
# over the total cap, over the per-address cap, or near the descriptor limit by closing it at once,
# and only then starts TLS itself (``loop.start_tls`` with a short handshake deadline) and hands the
# connection to the HTTP protocol.


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the server holds, per client address, and how long a TLS handshake may take."""

    total: int = 256
    per_address: int = 32
    handshake_timeout: float = 5.0
    # Descriptors kept free: asyncio accepts up to ``backlog`` sockets per wake-up before any gate runs,
    # and a refused socket is closed an iteration later, so a few batches can be in flight; plus the
    # gallery, the thread pool and the logs.
    backlog: int = 64
    fd_reserve: int = 3 * 64 + 64


def descriptor_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or ``None`` where there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - no procfs
        return 0


class Admission:
    """Counts of open connections (total and per address) shared by every gate of one server."""

    def __init__(self, limits: ConnectionLimits, fd_limit: int | None = None) -> None:
        self.limits = limits
        self.open = 0
        self.by_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.fd_limit = descriptor_limit() if fd_limit is None else fd_limit
        self._baseline: int | None = None  # descriptors the process held before its first connection

    def refusal(self, address: str) -> str | None:
        """Why a new connection from ``address`` is refused, or ``None`` when it is admitted."""
        if self.open >= self.limits.total:
            return "connection cap"
        if self.by_address[address] >= self.limits.per_address:
            return "per-address cap"
        if self.fd_limit is not None:
            if self._baseline is None:
                self._baseline = max(0, open_descriptors() - 1)  # minus the socket just accepted
            reserve = min(self.limits.fd_reserve, self.fd_limit // 2)  # a low ulimit still leaves half for clients
            if self._baseline + self.open + 1 > self.fd_limit - reserve:
                return "descriptor limit"
        return None

    def admit(self, address: str) -> str | None:
        reason = self.refusal(address)
        if reason is None:
            self.open += 1
            self.by_address[address] += 1
        else:
            self.refused[reason] += 1
        return reason

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")

log = logging.getLogger("veil.serve")


class _Pending(asyncio.Protocol):
    """The TLS transport's first protocol: keeps data and EOF until the HTTP protocol takes over."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class GatedProtocol(asyncio.Protocol):
    """What uvicorn creates per accepted socket: admission, then (optionally) TLS, then the HTTP protocol.

    uvicorn takes a protocol *class* called with ``config``, ``server_state``, ``app_state``; the
    admission state, the TLS context and the HTTP class are bound by :func:`gated_protocol`.
    """

    admission: Admission
    http_class: type[GuardedH11Protocol] = GuardedH11Protocol
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._http_args = (config, server_state, app_state, _loop)
        self._loop = _loop or asyncio.get_event_loop()
        self._address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        reason = self.admission.admit(self._address)
        if reason is not None:
            self._refuse(transport, reason)
            return
        http = self.http_class(*self._http_args)
        http.on_lost = lambda: self.admission.release(self._address)
        if self.ssl_context is None:
            transport.set_protocol(http)
            http.connection_made(transport)
            return
        transport.pause_reading()  # the ClientHello waits in the kernel until start_tls reads it
        self._loop.create_task(self._handshake(transport, http))

    def _refuse(self, transport: asyncio.Transport, reason: str) -> None:
        if self.ssl_context is None:  # plain HTTP can say why, for free
            body = json.dumps({"error": f"server busy ({reason}); retry later"}).encode()
            transport.write(BUSY % (len(body), body))
            transport.close()
        else:
            transport.abort()
        limited_warning(log, f"refusing connections: {reason}", f"refused {{n}} connection(s) ({reason}; "
                        f"{self.admission.open} open, limits {self.admission.limits.total} total, "
                        f"{self.admission.limits.per_address} per address)")

    async def _handshake(self, transport: asyncio.Transport, http: GuardedH11Protocol) -> None:
        assert self.ssl_context is not None
        pending = _Pending()  # holds what arrives between the handshake's end and the hand-over to ``http``
        try:
            tls = await self._loop.start_tls(transport, pending, self.ssl_context, server_side=True,
                                             ssl_handshake_timeout=self.admission.limits.handshake_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError, ConnectionError, RuntimeError) as exc:
            transport.abort()
            self.admission.release(self._address)
            self.admission.refused["handshake"] += 1
            limited_warning(log, "TLS handshake failed", f"{{n}} TLS handshake(s) failed or timed out "
                            f"({type(exc).__name__})")
            return
        if tls is None or pending.lost:  # pragma: no cover - closed as the handshake completed
            self.admission.release(self._address)
            transport.abort()
            return
        tls.set_protocol(http)
        http.connection_made(tls)
        for chunk in pending.chunks:
            http.data_received(chunk)
        if pending.eof:
            http.eof_received()

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused or handed over
        pass

    def connection_lost(self, exc: Exception | None) -> None:  # only a refused connection reaches here
        pass


def gated_protocol(limits: ConnectionLimits, header_timeout: float,
                   ssl_context: ssl.SSLContext | None = None) -> type[GatedProtocol]:
    """A gate class bound to one server's shared admission state, TLS context and HTTP deadline."""
    return type("GatedProtocol", (GatedProtocol,), {
        "admission": Admission(limits), "ssl_context": ssl_context,
        "http_class": guarded_protocol(header_timeout)})


LISTEN_QUEUE = 1024


def widen_listen_queue(servers: list[Any], queue: int = LISTEN_QUEUE) -> None:
    """Give the kernel's accept queue ``queue`` slots after asyncio set it to its accept batch.

    asyncio uses one number for both the kernel's queue and how many sockets it accepts per wake-up;
    a small batch keeps descriptors in hand, and a long queue keeps a legitimate client's SYN from
    being dropped (a 1 s retransmission) while a flooder refills a short one.
    """
    import socket

    for server in servers:
        for sock in server.sockets or ():
            dup = socket.socket(fileno=os.dup(sock.fileno()))
            try:
                dup.listen(queue)
            finally:
                dup.close()


def server_ssl_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later) for the certificate and its key."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
