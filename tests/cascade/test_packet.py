"""The packet format alone: sizes, authentication, replay, routing privacy. No network, fast."""

from __future__ import annotations

import pytest

from veil.cascade import constants as C
from veil.cascade.designer import largest_message
from veil.cascade.models import load_spec
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_packet, open_e2e, reseal, seal_e2e, seal_packet
from veil.cascade.routing import Routing
from veil.errors import VeilError


def _route(n: int, op: int = C.OP_FORWARD) -> tuple[list[Peeler], list[Hop], list[Routing]]:
    peelers = [Peeler() for _ in range(n)]
    hops = [Hop(f"10.0.0.{i + 1}:{7000 + i}", p.public_key) for i, p in enumerate(peelers)]
    return peelers, hops, [Routing(op=op) for _ in range(n)]


@pytest.mark.parametrize("op", sorted(C.OPS))
@pytest.mark.parametrize("n", [1, 3, C.MAX_HOPS])
def test_every_packet_has_the_same_length_at_every_hop(op: int, n: int) -> None:
    peelers, hops, routes = _route(n, op)
    pkt, _ = build_packet(hops, routes, b"x" * (op * 1000))
    for i, p in enumerate(peelers):
        assert len(pkt) == C.PACKET_SIZE
        peeled = p.peel(pkt)
        assert peeled.routing.op == op
        assert peeled.routing.is_final == (i == n - 1)
        if not peeled.routing.is_final:
            pkt = reseal(peeled, peeled.body + b"y" * 5000)  # bodies of any size give one packet size


def test_body_reaches_the_last_hop_and_each_hop_reads_only_its_routing() -> None:
    peelers, hops, _ = _route(4)
    routes = [Routing(op=C.OP_FORWARD, extra=bytes([i]) * (i + 1)) for i in range(4)]
    pkt, keys = build_packet(hops, routes, b"hello")
    for i, p in enumerate(peelers):
        peeled = p.peel(pkt)
        assert peeled.routing.extra == bytes([i]) * (i + 1)
        assert peeled.keys.payload == keys[i].payload
        assert peeled.routing.next_address == (hops[i + 1].address if i < 3 else "")
        if i < 3:
            pkt = reseal(peeled, peeled.body + b"!")
    assert peeled.body == b"hello!!!"


def test_no_hop_learns_a_non_adjacent_address() -> None:
    peelers, hops, routes = _route(6)
    pkt, _ = build_packet(hops, routes, b"payload")
    for i, p in enumerate(peelers):
        peeled = p.peel(pkt)
        seen = pkt + peeled.body + peeled.routing.encode() + peeled.next_header
        for j, h in enumerate(hops):
            if j != i + 1:  # only the next hop's address may appear anywhere this hop can read
                assert h.address.encode() not in seen, (i, j)
        if i < 5:
            assert peeled.routing.next_address == hops[i + 1].address
            nxt = reseal(peeled, peeled.body)
            # the header is re-encrypted at every hop: no slot-sized run of bytes survives to the next link
            for k in range(0, C.HEADER_SIZE - C.SLOT_SIZE, C.SLOT_SIZE):
                assert pkt[k : k + C.SLOT_SIZE] not in nxt[: C.HEADER_SIZE]
            pkt = nxt


def test_tampered_header_is_rejected() -> None:
    peelers, hops, routes = _route(3)
    pkt, _ = build_packet(hops, routes, b"x")
    for offset in (0, C.KEY_SIZE + 5, C.SLOT_SIZE + 7, C.HEADER_SIZE - 1):
        bad = bytearray(pkt)
        bad[offset] ^= 0x01
        with pytest.raises(PacketRejected, match="header authentication|ephemeral"):
            peelers[0].peel(bytes(bad))
    peelers[0].peel(pkt)  # the untampered original still works: rejections leave no state behind


def test_tampered_payload_is_rejected() -> None:
    peelers, hops, routes = _route(2)
    pkt, _ = build_packet(hops, routes, b"x")
    bad = bytearray(pkt)
    bad[C.HEADER_SIZE + 100] ^= 0x80
    with pytest.raises(PacketRejected, match="payload authentication"):
        peelers[0].peel(bytes(bad))


@pytest.mark.parametrize("size", [0, 100, C.PACKET_SIZE - 1, C.PACKET_SIZE + 1])
def test_wrong_length_is_rejected(size: int) -> None:
    peelers, hops, routes = _route(2)
    pkt, _ = build_packet(hops, routes, b"x")
    data = (pkt + b"\0")[:size]
    with pytest.raises(PacketRejected, match="wrong packet length"):
        peelers[0].peel(data)


def test_replay_is_rejected() -> None:
    peelers, hops, routes = _route(2)
    pkt, _ = build_packet(hops, routes, b"x")
    peelers[0].peel(pkt)
    with pytest.raises(PacketRejected, match="replayed"):
        peelers[0].peel(pkt)


def test_misrouted_packet_is_rejected() -> None:
    peelers, hops, routes = _route(3)
    pkt, _ = build_packet(hops, routes, b"x")
    with pytest.raises(PacketRejected, match="not addressed to this node"):
        peelers[1].peel(pkt)  # meant for hop 0
    with pytest.raises(PacketRejected, match="not addressed to this node"):
        Peeler().peel(pkt)


def test_end_to_end_content_is_opaque_to_relays() -> None:
    peelers, hops, routes = _route(3)
    pkt, keys = build_packet(hops, routes, b"")
    sealed = seal_e2e(keys[2].e2e, b"layer spec", from_hop=False)
    assert open_e2e(keys[2].e2e, sealed, from_hop=False) == b"layer spec"
    relay = peelers[0].peel(pkt)
    with pytest.raises(PacketRejected):
        open_e2e(relay.keys.e2e, sealed, from_hop=False)
    with pytest.raises(PacketRejected):  # directions use different nonces: a reply cannot be reflected
        open_e2e(keys[2].e2e, sealed, from_hop=True)


def test_route_limits_are_enforced() -> None:
    _, hops, routes = _route(C.MAX_HOPS + 1)
    with pytest.raises(VeilError, match="allows 1 to"):
        build_packet(hops, routes, b"")
    _, hops, routes = _route(2)
    with pytest.raises(VeilError, match="exceeds the packet capacity"):
        build_packet(hops, routes, b"\0" * (C.BODY_CAPACITY + 1))
    with pytest.raises(VeilError, match="batch too large"):
        Routing(op=C.OP_FORWARD, extra=b"\0" * (C.EXTRA_SIZE + 1)).encode()


def test_routing_roundtrip() -> None:
    r = Routing(op=C.OP_STATE, flags=C.FLAG_TARGET, tag=b"12345678", next_address="127.0.0.1:5",
                next_payload_key=b"k" * 32, frag=3, extra=b"\x01\x02")
    raw = r.encode()
    assert len(raw) == C.ROUTING_SIZE
    assert Routing.decode(raw) == r


@pytest.mark.parametrize("cell", C.CELL_SIZES[:3])
def test_a_run_cell_keeps_one_length_at_every_hop(cell: int) -> None:
    peelers, hops, routes = _route(4)
    pkt, _ = build_packet(hops, routes, b"x" * 100, cell)
    for i, p in enumerate(peelers):
        assert len(pkt) == C.packet_size(cell)
        peeled = p.peel(pkt)
        assert peeled.routing.cell == cell
        if i < 3:
            pkt = reseal(peeled, peeled.body + b"y" * 1000)  # any body gives the same length


def test_a_payload_resized_in_transit_is_rejected() -> None:
    # a relay knows the next payload key, so it could reseal into another size class; the next hop refuses
    # any payload whose size is not the cell the designer announced in that hop's own routing slot
    peelers, hops, routes = _route(2)
    pkt, _ = build_packet(hops, routes, b"x", C.CELL_SIZES[1])
    peeled = peelers[0].peel(pkt)
    resized = seal_packet(peeled.routing.next_payload_key, peeled.next_header, peeled.body, C.CELL_SIZES[0])
    with pytest.raises(PacketRejected, match="resized in transit"):
        peelers[1].peel(resized)


def test_the_run_cell_is_the_smallest_class_for_the_largest_message() -> None:
    digits, mnist = largest_message(load_spec("mlp", 64)), largest_message(load_spec("mlp", 784))
    assert digits > 64 * 128 * 4 and mnist > 64 * 784 * 4  # widest activation (digits) / input (MNIST)
    assert C.cell_for(digits) == 64 * 1024 and C.cell_for(mnist) == 256 * 1024
    assert C.body_capacity(C.cell_for(digits) // 2) < digits
    with pytest.raises(VeilError, match="largest packet class"):
        C.cell_for(C.MAX_CELL)
    with pytest.raises(VeilError, match="size classes"):
        build_packet(_route(1)[1], [Routing(op=C.OP_LOOP)], b"", 12345)
