"""The parts every transport shares: the packet callback type, a background sender, address parsing.

Why a module of their own: ``veil.cascade.transport`` builds the transports by name, so the transports
cannot import their parts from it without an import cycle.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from veil.cascade import constants as C
from veil.errors import VeilError

OnPacket = Callable[[bytes], None]


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
