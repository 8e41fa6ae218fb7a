"""gRPC transport: one unary method carrying opaque packet bytes; persistent channels, raised size limits.

No protobuf schema is needed: the packet is already a fixed-size byte string, so the generic handler passes
bytes through untouched (no serializer means raw bytes in gRPC Python). A push is acknowledged as soon as
the receiver has queued the packet, so a cascade never holds an RPC open across hops. (Measured on loopback:
a queue + worker thread + blocking unary push relays faster than handling in the RPC thread with gRPC
futures, whose polling thread competes for the GIL, or than grpc.aio; so that is what nodes do.)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent import futures

import grpc

from veil.cascade import constants as C
from veil.errors import VeilError

_OPTIONS = [
    ("grpc.max_send_message_length", C.GRPC_MAX_MESSAGE),
    ("grpc.max_receive_message_length", C.GRPC_MAX_MESSAGE),
    ("grpc.enable_retries", 0),  # a packet is delivered once or reported lost, never re-sent (replay cache)
]
_PATH = f"/{C.GRPC_SERVICE}/{C.GRPC_METHOD}"


class Server:
    """Listens on ``host:port`` (port 0 picks a free one) and hands each packet to ``on_packet``."""

    def __init__(self, listen: str, on_packet: Callable[[bytes, str], None], workers: int = 4) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise VeilError(f"listen address {listen!r} is not HOST:PORT")
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=_OPTIONS)

        def push(request: bytes, context: grpc.ServicerContext) -> bytes:
            on_packet(request, context.peer())
            return b""

        handler = grpc.method_handlers_generic_handler(
            C.GRPC_SERVICE, {C.GRPC_METHOD: grpc.unary_unary_rpc_method_handler(push)})
        self._server.add_generic_rpc_handlers((handler,))
        try:
            bound = self._server.add_insecure_port(listen)
        except RuntimeError:
            bound = 0
        if not bound:
            raise VeilError(f"cannot listen on {listen} (address in use or not local)")
        self.address = f"{host}:{bound}"

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 0.5) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()


class Client:
    """One persistent channel per address, reused for every packet sent there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, Callable[..., bytes]]] = {}
        self._outbox: queue.Queue[tuple[str, bytes, Callable[[str], None] | None, float] | None] = queue.Queue()
        self._sender: threading.Thread | None = None

    def _stub(self, address: str) -> Callable[..., bytes]:
        with self._lock:
            if address not in self._stubs:
                ch = grpc.insecure_channel(address, options=_OPTIONS)
                self._stubs[address] = (ch, ch.unary_unary(_PATH))
            return self._stubs[address][1]

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None:
        """Deliver one packet and wait for the receiver's acknowledgement; a VeilError names the address when
        it cannot be reached."""
        try:
            self._stub(address)(packet, timeout=timeout)
        except grpc.RpcError as exc:
            raise VeilError(f"cannot deliver to {address}: {exc.code().name}") from None

    def send(self, address: str, packet: bytes, on_error: Callable[[str], None] | None = None,
             timeout: float = C.SEND_TIMEOUT_S) -> None:
        """Deliver one packet without waiting: a background thread pushes it; a failure is reported to
        ``on_error`` (from that thread) with a message naming the address."""
        with self._lock:
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

    def close(self) -> None:
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout=5)
            self._sender = None
        with self._lock:
            for ch, _ in self._stubs.values():
                ch.close()
            self._stubs.clear()
