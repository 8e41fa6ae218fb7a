"""A node over the real (ZeroMQ) transport, in this process: bad packets are dropped with a reason, and the
node keeps serving; the designer's loop messages still come back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from veil.cascade import constants as C
from veil.cascade import pool as pool_mod
from veil.cascade import transport
from veil.cascade.designer import Designer
from veil.cascade.models import load_spec
from veil.cascade.node import Node
from veil.cascade.packet import Hop, build_packet
from veil.cascade.routing import Routing
from veil.cascade.testing import wait_until


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[list[Node], Path]]:
    ns = [Node().start() for _ in range(2)]
    pool = tmp_path / "pool.json"
    for n in ns:
        pool_mod.register(pool, n.address, n.public_key)
    try:
        yield ns, pool
    finally:
        for n in ns:
            n.stop()



def test_bad_packets_are_logged_and_the_node_keeps_serving(nodes, caplog: pytest.LogCaptureFixture) -> None:
    (a, b), pool = nodes
    client = transport.make()
    caplog.set_level(logging.WARNING, logger="veil.cascade.node")
    with Designer(pool, load_spec("mlp", 64), loop_rate=0) as des:
        path = [Hop(a.address, a.public_key), Hop(b.address, b.public_key), des.hop]
        good, _ = build_packet(path, [Routing(op=C.OP_LOOP)] * 3, b"hi")
        client.push(a.address, good)
        client.push(a.address, good)  # replay
        client.push(a.address, good[:-10])  # truncated
        fresh, _ = build_packet(path, [Routing(op=C.OP_LOOP)] * 3, b"hi")
        tampered = bytearray(fresh)
        tampered[C.HEADER_SIZE + 1] ^= 1
        client.push(a.address, bytes(tampered))
        client.push(b.address, good)  # mis-routed: sealed for a, delivered to b
        assert wait_until(lambda: len(a.rejections) >= 3 and len(b.rejections) >= 1)
        assert any("replayed" in r for r in a.rejections)
        assert any("wrong packet length" in r for r in a.rejections)
        assert any("payload authentication failed" in r for r in a.rejections)
        assert any("not addressed to this node" in r for r in b.rejections)
        assert "rejected packet: replayed" in caplog.text
        # still serving: a fresh loop message through both nodes comes back to the designer
        des.send_loops(3)
        assert wait_until(lambda: des.loops_returned >= 3)
        assert a.stats["loop"] + b.stats["loop"] >= 2 + 3  # the good packet crossed both, each loop >= 1
    client.close()


def test_wrong_op_order_is_rejected_not_fatal(nodes) -> None:
    (a, b), pool = nodes
    with Designer(pool, load_spec("mlp", 64), loop_rate=0) as des:
        path = [Hop(a.address, a.public_key), des.hop]
        pkt, _ = build_packet(path, [Routing(op=C.OP_FORWARD)] * 2, b"not a message")
        client = transport.make()
        client.push(a.address, pkt)
        assert wait_until(lambda: len(a.rejections) == 1)
        assert "without a session" in a.rejections[0]
        client.close()
        des.send_loops(2)
        assert wait_until(lambda: des.loops_returned >= 2)
