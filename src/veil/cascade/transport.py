"""How packets travel between the designer and layer servers: one small protocol, two implementations.

Roles (designer, node) are handed a ``Transport`` and never build sockets themselves, so a faster or an
authenticated transport is a swap, not a rewrite (Flower's habit). A transport moves opaque, already
authenticated and encrypted fixed-size packets; it adds no security of its own and needs none.

- ``zmq`` (default): ZeroMQ PUSH/PULL over TCP (pyzmq). Fire-and-forget, no per-message acknowledgement, one
  receiving thread that hands packets over in arrival order, so a node processes them inline (no queue hop).
- ``grpc``: one unary ``veil.cascade.Relay/Push`` per packet (grpcio), acknowledged once the receiver queued it.
  Kept for interoperability with gRPC infrastructure (proxies, load balancers, TLS termination).

Measured per-message costs on loopback are in docs/cascade.md (``python bench/cascade.py``, "transport").
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

from veil.cascade import constants as C
from veil.errors import VeilError

OnPacket = Callable[[bytes], None]


class Listener(Protocol):
    """A bound receiving endpoint. ``address`` is HOST:PORT as others reach it (port 0 resolved)."""

    address: str
    serial: bool  # True: ``on_packet`` runs in one thread, in arrival order (the receiver may work inline)

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Transport(Protocol):
    """Moves packets. ``push`` waits until the packet is handed to the network (or fails with a VeilError that
    names the address); ``send`` does the same from a background thread and reports failures to ``on_error``."""

    name: str

    def listen(self, address: str, on_packet: OnPacket) -> Listener: ...

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None: ...

    def send(self, address: str, packet: bytes, on_error: Callable[[str], None] | None = None,
             timeout: float = C.SEND_TIMEOUT_S) -> None: ...

    def close(self) -> None: ...


class BackgroundSender:
    """``send`` for any transport with a blocking ``push``: one daemon thread drains an outbox, so cover traffic
    never blocks the caller; a failure goes to ``on_error`` with a message naming the address."""

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None:
        raise NotImplementedError

    def _outbox_init(self) -> None:
        self._outbox: queue.Queue[tuple[str, bytes, Callable[[str], None] | None, float] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    def send(self, address: str, packet: bytes, on_error: Callable[[str], None] | None = None,
             timeout: float = C.SEND_TIMEOUT_S) -> None:
        with self._sender_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="cascade-sender", daemon=True)
                self._sender.start()
        self._outbox.put((address, packet, on_error, timeout))

    def _send_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            address, packet, on_error, timeout = item
            try:
                self.push(address, packet, timeout)
            except VeilError as exc:
                if on_error is not None:
                    on_error(str(exc))

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout=5)
            self._sender = None


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port), with a clear error for anything else."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise VeilError(f"address {address!r} is not HOST:PORT")
    return host, int(port)


def make(name: str = C.DEFAULT_TRANSPORT, link_delay: float = 0.0) -> Transport:
    """A fresh transport by name (``zmq`` or ``grpc``); ``link_delay`` > 0 holds every received packet that many
    seconds (link delay emulation where the kernel has no ``netem``: ``transport_delay``)."""
    if link_delay > 0:
        from veil.cascade.transport_delay import DelayedTransport

        return DelayedTransport(make(name), link_delay)
    if name == "zmq":
        from veil.cascade.transport_zmq import ZmqTransport

        return ZmqTransport()
    if name == "grpc":
        from veil.cascade.transport_grpc import GrpcTransport

        return GrpcTransport()
    raise VeilError(f"unknown transport {name!r} (one of {', '.join(C.TRANSPORTS)})")
