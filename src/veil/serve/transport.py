"""uvicorn's HTTP/1.1 protocol with a header deadline: a connection that does not finish its request line
and headers within ``header_timeout`` seconds is closed.

Why: uvicorn closes idle keep-alive connections, but not one that has sent *part* of a request, so
1,100 half-sent requests held 1,100 descriptors and ``/health`` timed out (issue 12, finding 3). The
deadline runs from the moment the server starts waiting for a request (connection made, or the
previous response sent) and is not reset by trickled bytes; the body has its own deadline in the
app (:func:`veil.serve.app.read_capped`), and uvicorn's ``limit_concurrency`` caps connections.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    """H11Protocol that closes a connection which leaves a request's head unfinished for too long."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
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
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class with its own deadline (uvicorn takes a class, not an instance)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": float(header_timeout)})
