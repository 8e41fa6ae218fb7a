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

from collections.abc import Callable
from typing import Protocol

from veil.cascade import constants as C
from veil.cascade.sending import OnPacket
from veil.errors import VeilError


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
