"""Packet format v2: AES-256-GCM payloads under single-use keys, the format version in the authenticated routing,
and v1 packets (ChaCha20-Poly1305 payloads, no version nibble) refused by name. In process; SYNTHETIC bodies."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from veil.cascade import constants as C
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_header, build_packet, reseal, seal_packet
from veil.cascade.routing import Routing
from veil.errors import VeilError

CELL = C.CELL_SIZES[0]


def hops(first: Peeler, session: bytes | None = None) -> list[Hop]:
    return [Hop("10.26.0.2:1", first.public_key, session), Hop("10.26.0.3:2", Peeler().public_key)]


def payload_plain(key: bytes, packet: bytes) -> bytes:
    header, payload = packet[: C.HEADER_SIZE], packet[C.HEADER_SIZE :]
    return AESGCM(key).decrypt(bytes(C.NONCE_SIZE), payload, header)


@pytest.mark.parametrize("session", [None, os.urandom(32)])
def test_the_payload_is_aes_256_gcm_under_the_hops_payload_key_bound_to_the_header(session: bytes | None) -> None:
    p = Peeler()
    if session:
        p.bind(session)
    body = b"SYNTHETIC body"
    pkt, keys = build_packet(hops(p, session), [Routing(op=C.OP_FORWARD)] * 2, body, CELL)
    plain = payload_plain(keys[0].payload, pkt)
    assert plain[4 : 4 + len(body)] == body and len(pkt) == C.packet_size(CELL)
    with pytest.raises(InvalidTag):  # not the v1 cipher
        ChaCha20Poly1305(keys[0].payload).decrypt(bytes(C.NONCE_SIZE), pkt[C.HEADER_SIZE :], pkt[: C.HEADER_SIZE])
    peeled = p.peel(pkt)
    assert peeled.body == body and peeled.session == (session is not None)
    out = reseal(peeled, b"next")
    assert len(out) == len(pkt)  # fixed length along the route
    assert payload_plain(keys[1].payload, out)[4:8] == b"next"


def test_every_packet_and_hop_gets_its_own_payload_key_so_the_constant_nonce_is_never_reused() -> None:
    p, secret = Peeler(), os.urandom(32)
    seen: set[bytes] = set()
    for session in (None, secret):
        for _ in range(20):
            _, keys = build_header(hops(p, session), [Routing(op=C.OP_FORWARD)] * 2, CELL)
            seen.update(k.payload for k in keys)
    assert len(seen) == 80


def test_routing_carries_the_version_in_the_flags_high_nibble() -> None:
    r = Routing(op=C.OP_LOOP, flags=C.FLAG_TARGET)
    raw = r.encode()
    assert raw[1] == (C.FORMAT_VERSION << C.VERSION_SHIFT) | C.FLAG_TARGET
    back = Routing.decode(raw)
    assert back.version == C.FORMAT_VERSION and back.flags == C.FLAG_TARGET and back.is_target
    v1 = Routing(op=C.OP_LOOP, flags=C.FLAG_TARGET, version=1).encode()
    assert v1[1] == C.FLAG_TARGET and Routing.decode(v1).version == 1  # v1 had no version: its nibble was 0
    with pytest.raises(VeilError, match="flags or format version out of range"):
        Routing(op=C.OP_LOOP, flags=0x10).encode()


@pytest.mark.parametrize("session", [None, os.urandom(32)])
def test_a_v1_packet_is_refused_by_name_before_its_payload_is_opened(session: bytes | None) -> None:
    """A v1 sender: same keys and header, ChaCha20-Poly1305 payload, no version nibble."""
    p = Peeler()
    if session:
        p.bind(session)
    header, keys = build_header(hops(p, session), [Routing(op=C.OP_FORWARD, version=1)] * 2, CELL)
    plain = bytes(4) + bytes(CELL - C.TAG_SIZE - 4)
    pkt = header + ChaCha20Poly1305(keys[0].payload).encrypt(bytes(C.NONCE_SIZE), plain, header)
    with pytest.raises(PacketRejected) as info:
        p.peel(pkt)
    assert str(info.value) == ("packet is format v1 (ChaCha20-Poly1305 payload), expected v2 (AES-256-GCM): the"
                               " sender runs another Veil version")
    assert p.cache_size == 0  # refused: no replay tag kept, the same packet is refused the same way again
    with pytest.raises(PacketRejected, match="format v1"):
        p.peel(pkt)


def test_an_unknown_future_version_is_named_too() -> None:
    p = Peeler()
    pkt, _ = build_packet(hops(p), [Routing(op=C.OP_FORWARD, version=3)] * 2, b"x", CELL)
    with pytest.raises(PacketRejected, match=r"format v3 \(unknown payload\), expected v2"):
        p.peel(pkt)


def test_a_tampered_aes_gcm_payload_or_header_is_refused() -> None:
    p = Peeler()
    pkt, _ = build_packet(hops(p), [Routing(op=C.OP_FORWARD)] * 2, b"x", CELL)
    for pos in (C.HEADER_SIZE + 5, len(pkt) - 1, C.HEADER_SIZE - 1):
        bad = bytearray(pkt)
        bad[pos] ^= 0x40
        with pytest.raises(PacketRejected, match="authentication failed"):
            Peeler.peel(p, bytes(bad))


@pytest.mark.parametrize("size", [0, 1, 1000, C.body_capacity(CELL)])
def test_the_streamed_seal_is_byte_for_byte_one_shot_aes_gcm(size: int) -> None:
    key, header, body = os.urandom(32), os.urandom(C.HEADER_SIZE), os.urandom(size)
    plain = size.to_bytes(4, "little") + body + bytes(C.body_capacity(CELL) - size)
    expected = header + AESGCM(key).encrypt(bytes(C.NONCE_SIZE), plain, header)
    assert seal_packet(key, header, body, CELL) == expected
