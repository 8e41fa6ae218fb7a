"""gRPC transport: one unary method carrying opaque packet bytes; persistent channels, raised size limits.

No protobuf schema is needed: the packet is already a fixed-size byte string, so the generic handler passes
bytes through untouched (no serializer means raw bytes in gRPC Python). A push is acknowledged as soon as
the receiver has queued the packet, so a cascade never holds an RPC open across hops. Handlers run on a thread
pool, so the listener is not ``serial``: a node queues packets and works through them in one worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import grpc

from veil.cascade import constants as C
from veil.cascade.sending import BackgroundSender, OnPacket, split_address
from veil.errors import VeilError

_OPTIONS = [
    ("grpc.max_send_message_length", C.GRPC_MAX_MESSAGE),
    ("grpc.max_receive_message_length", C.GRPC_MAX_MESSAGE),
    ("grpc.enable_retries", 0),  # a packet is delivered once or reported lost, never re-sent (replay cache)
]
_PATH = f"/{C.GRPC_SERVICE}/{C.GRPC_METHOD}"


class GrpcListener:
    """Listens on ``host:port`` (port 0 picks a free one) and hands each packet to ``on_packet``."""

    serial = False

    def __init__(self, listen: str, on_packet: OnPacket, workers: int = 4) -> None:
        host, _ = split_address(listen)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=_OPTIONS)

        def push(request: bytes, context: grpc.ServicerContext) -> bytes:
            on_packet(request)
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


class GrpcTransport(BackgroundSender):
    """One persistent channel per address, reused for every packet sent there."""

    name = "grpc"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, Callable[..., bytes]]] = {}
        self._outbox_init()

    def listen(self, address: str, on_packet: OnPacket) -> GrpcListener:
        return GrpcListener(address, on_packet)

    def _stub(self, address: str) -> Callable[..., bytes]:
        with self._lock:
            if address not in self._stubs:
                ch = grpc.insecure_channel(address, options=_OPTIONS)
                self._stubs[address] = (ch, ch.unary_unary(_PATH))
            return self._stubs[address][1]

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None:
        try:
            self._stub(address)(packet, timeout=timeout)
        except grpc.RpcError as exc:
            raise VeilError(f"cannot deliver to {address}: {exc.code().name}") from None

    def close(self) -> None:
        self._stop_sender()
        with self._lock:
            for ch, _ in self._stubs.values():
                ch.close()
            self._stubs.clear()
