"""A loopback layer node for tests and fuzzing: start one in this process and throw raw bytes at it.

    from veil.cascade import loopback_node
    with loopback_node() as ln:
        ln.send(b"...raw packet bytes...")       # over the real transport, as any peer would
        ln.wait_handled(1)                        # until the node has handled (accepted or refused) 1 packet
        print(ln.rejections, ln.stats)

``ln.hop`` is the node's (address, public key): what an outsider who read the pool file knows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from veil.cascade import constants as C
from veil.cascade import transport as transport_mod
from veil.cascade.node import Node
from veil.cascade.packet import Hop


@dataclass
class LoopbackNode:
    """A started node on 127.0.0.1 plus a sending transport of the same kind."""

    node: Node
    sender: transport_mod.Transport

    @property
    def hop(self) -> Hop:
        return Hop(self.node.address, self.node.public_key)

    @property
    def rejections(self) -> list[str]:
        return self.node.rejections

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.node.stats)

    def handled(self) -> int:
        """Packets the node has refused or acted on so far."""
        return self.node.stats["rejected"] + sum(self.node.stats[op] for op in C.OPS.values())

    def send(self, raw: bytes) -> None:
        """Deliver ``raw`` bytes to the node as one message (any length the transport carries)."""
        self.sender.push(self.node.address, raw, timeout=5.0)

    def wait_handled(self, n: int, timeout: float = 10.0) -> bool:
        return wait_until(lambda: self.handled() >= n, timeout)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes (packets are handled asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


@contextlib.contextmanager
def loopback_node(transport: str = C.DEFAULT_TRANSPORT, **node_options: object) -> Iterator[LoopbackNode]:
    """Start a layer node on loopback (``Node`` options pass through) and stop it afterwards."""
    node = Node("127.0.0.1:0", transport=transport, **node_options).start()  # type: ignore[arg-type]
    sender = transport_mod.make(transport)
    try:
        yield LoopbackNode(node, sender)
    finally:
        sender.close()
        node.stop()
