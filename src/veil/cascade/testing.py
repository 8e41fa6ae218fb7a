"""Test-only parts of the cascade: a loopback layer node to throw raw bytes at, and misbehaving nodes.

Misbehaviours are hooks a node applies to each layer output before sending it (``veil cascade node
--misbehave corrupt``, hidden); the node itself knows only that a hook may be given. A loopback node:

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

import torch

from veil.cascade import constants as C
from veil.cascade import transport as transport_mod
from veil.cascade.node import Node
from veil.cascade.packet import Hop
from veil.errors import VeilError


def corrupt(out: torch.Tensor) -> torch.Tensor:
    """Byzantine: plausible-looking garbage of the output's shape and about its scale."""
    return torch.randn_like(out) * (out.std() + 1.0)


MISBEHAVIOURS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"corrupt": corrupt}


def misbehaviour(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The hook named ``name``, or a VeilError listing them."""
    try:
        return MISBEHAVIOURS[name]
    except KeyError:
        raise VeilError(f"unknown misbehaviour {name!r} (one of {', '.join(MISBEHAVIOURS)})") from None


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
