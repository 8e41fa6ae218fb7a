"""ZeroMQ transport (pyzmq): PUSH/PULL sockets over TCP, the default.

Why: a cascade step is a chain of sequential one-way transfers, and each hop acknowledging each packet (gRPC
unary) doubles the messages and adds HTTP/2 framing and a thread-pool hand-off per packet. ZeroMQ sends a
length-prefixed frame over a persistent TCP connection; its I/O thread runs outside the GIL, and the receiving
thread hands packets over in arrival order, so a node can work inline. Per-message figures: docs/cascade.md.

Delivery semantics: ``push`` returns once ZeroMQ has accepted the packet for a *connected* peer
(``ZMQ_IMMEDIATE``): to an address nobody listens on it fails after ``timeout`` with a VeilError, as gRPC's
UNAVAILABLE did. A peer that dies later loses what was in flight; the designer's time bound catches that.
Oversized frames are refused by ZeroMQ itself (``ZMQ_MAXMSGSIZE``: the largest packet class), before Python.
"""

from __future__ import annotations

import threading

import zmq

from veil.cascade import constants as C
from veil.cascade.sending import BackgroundSender, OnPacket, split_address
from veil.errors import VeilError

_MAX_MESSAGE = C.packet_size(C.MAX_CELL)
_POLL_MS = 100  # how often the receiving thread looks at its stop flag


class ZmqListener:
    """A PULL socket bound to HOST:PORT (port 0: an ephemeral port) and the thread that reads it."""

    serial = True

    def __init__(self, context: zmq.Context, listen: str, on_packet: OnPacket) -> None:
        host, port = split_address(listen)
        self._sock = context.socket(zmq.PULL)
        self._sock.setsockopt(zmq.MAXMSGSIZE, _MAX_MESSAGE)
        self._sock.setsockopt(zmq.RCVHWM, 1000)
        self._sock.setsockopt(zmq.RCVTIMEO, _POLL_MS)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if port == 0:
                bound = self._sock.bind_to_random_port(f"tcp://{host}", min_port=20000, max_port=65000)
            else:
                self._sock.bind(f"tcp://{host}:{port}")
                bound = port
        except zmq.ZMQError as exc:
            self._sock.close()
            raise VeilError(f"cannot listen on {listen} ({exc})") from None
        self.address = f"{host}:{bound}"
        self._on_packet = on_packet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cascade-zmq-recv", daemon=True)

    def _run(self) -> None:
        sock, on_packet = self._sock, self._on_packet
        try:
            while not self._stop.is_set():
                try:
                    data = sock.recv()
                except zmq.Again:
                    continue
                on_packet(data)
        finally:
            sock.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        else:
            self._sock.close()


class _Peer:
    """One PUSH socket to one address; ZeroMQ sockets are not thread-safe, hence the lock."""

    def __init__(self, context: zmq.Context, address: str) -> None:
        host, port = split_address(address)
        self.lock = threading.Lock()
        self.sock = context.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a completed connection: dead peers fail fast
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.setsockopt(zmq.LINGER, 500)
        self.sock.connect(f"tcp://{host}:{port}")
        self.timeout_ms = -2


class ZmqTransport(BackgroundSender):
    """Sending side (one PUSH socket per peer, kept open) and listener factory, sharing one ZeroMQ context."""

    name = "zmq"

    def __init__(self) -> None:
        self._ctx = zmq.Context()
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer] = {}
        self._outbox_init()
        self._listeners: list[ZmqListener] = []

    def listen(self, address: str, on_packet: OnPacket) -> ZmqListener:
        lst = ZmqListener(self._ctx, address, on_packet)
        self._listeners.append(lst)
        return lst

    def _peer(self, address: str) -> _Peer:
        with self._lock:
            peer = self._peers.get(address)
            if peer is None:
                peer = self._peers[address] = _Peer(self._ctx, address)
            return peer

    def push(self, address: str, packet: bytes, timeout: float = C.SEND_TIMEOUT_S) -> None:
        peer = self._peer(address)
        ms = max(1, int(timeout * 1000))
        with peer.lock:
            if peer.timeout_ms != ms:
                peer.sock.setsockopt(zmq.SNDTIMEO, ms)
                peer.timeout_ms = ms
            try:
                peer.sock.send(packet, copy=len(packet) < 65536)
            except zmq.Again:
                raise VeilError(f"cannot deliver to {address}: no connection within {timeout:.1f} s") from None
            except zmq.ZMQError as exc:
                raise VeilError(f"cannot deliver to {address}: {exc}") from None

    def close(self) -> None:
        self._stop_sender()
        for lst in self._listeners:
            lst.stop()
        with self._lock:
            for peer in self._peers.values():
                with peer.lock:
                    peer.sock.close()
            self._peers.clear()
        self._ctx.term()
