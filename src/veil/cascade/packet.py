"""The onion packet: Sphinx-style layered header plus a per-hop AEAD payload, always ``PACKET_SIZE`` bytes.

Header: ``MAX_HOPS`` slots of ``SLOT_SIZE`` bytes. Hop *i* sees, at offset 0, its slot
``eph_pub(32) || AEAD_{k_header}(routing(366), aad=beta) (382)`` and then ``beta``, the rest of the header.
It derives keys from ``X25519(sk_i, eph_pub)``, opens its routing information (the AEAD also authenticates
``beta``), and computes the next header as ``ChaCha20_{k_stream}(beta || 0^SLOT)``: the header keeps its
length, every byte changes from hop to hop, and the slots of later hops stay sealed. The sender precomputes
the "filler" that those appended zero slots turn into, so every hop's AEAD checks out (Sphinx, Danezis and
Goldberg 2009; per-hop independent ephemeral keys instead of blinding, since MixNN needs no reply blocks).

Payload: ``ChaCha20Poly1305_{k_payload}(len(4) || body || zero pad, aad=header)``. A hop's payload key for
the packet it *sends* is given to it in its routing information, so a hop can seal its output for the next
hop without learning anything about that hop beyond its address.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from veil.cascade import constants as C
from veil.cascade.keys import HopKeys, derive, generate_private_key, load_public, public_bytes
from veil.cascade.routing import Routing
from veil.errors import VeilError

_ZERO_NONCE = bytes(C.NONCE_SIZE)


class PacketRejected(VeilError):
    """A packet failed a check; the message is the reason a node logs before serving the next one."""


@dataclass(frozen=True)
class Hop:
    """A server as the designer knows it: where it listens and its public key."""

    address: str
    public_key: bytes


@dataclass(frozen=True)
class Peeled:
    """What one hop gets out of a packet: its routing, the body, and the header to send on."""

    routing: Routing
    body: bytes
    next_header: bytes
    keys: HopKeys


def _stream(key: bytes, length: int) -> bytes:
    enc = Cipher(algorithms.ChaCha20(key, bytes(C.STREAM_NONCE_SIZE)), mode=None).encryptor()
    return enc.update(bytes(length))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def build_header(path: list[Hop], routes: list[Routing]) -> tuple[bytes, list[HopKeys]]:
    """Seal one routing slot per hop; returns the header for ``path[0]`` and every hop's keys.

    ``routes[i].next_address`` and ``next_payload_key`` are filled in here from ``path[i+1]``, so a caller
    cannot get them wrong; the last route is marked final.
    """
    k = len(path)
    if not 1 <= k <= C.MAX_HOPS:
        raise VeilError(f"a route has {k} hops; the packet format allows 1 to {C.MAX_HOPS}")
    if len(routes) != k:
        raise VeilError("one routing entry per hop is required")
    S, L = C.SLOT_SIZE, C.HEADER_SIZE
    ephs = [generate_private_key() for _ in range(k)]
    keys = [derive(e.exchange(load_public(h.public_key))) for e, h in zip(ephs, path, strict=True)]
    streams = [_stream(kk.stream, L) for kk in keys]
    # filler: what the zero slots appended by hops 0..i-1 have become when hop i receives the header
    filler = b""
    for i in range(k - 1):
        filler = _xor(filler + bytes(S), streams[i][L - (i + 1) * S :])
    full: list[Routing] = []
    for i, r in enumerate(routes):
        last = i == k - 1
        full.append(Routing(op=r.op, flags=(r.flags | C.FLAG_FINAL) if last else r.flags & ~C.FLAG_FINAL,
                            tag=r.tag, next_address="" if last else path[i + 1].address,
                            next_payload_key=bytes(C.KEY_SIZE) if last else keys[i + 1].payload,
                            frag=r.frag, extra=r.extra))
    beta = os.urandom((C.MAX_HOPS - k) * S) + filler  # the last hop's view of the rest of the header
    header = b""
    for i in range(k - 1, -1, -1):
        ct = ChaCha20Poly1305(keys[i].header).encrypt(_ZERO_NONCE, full[i].encode(), beta)
        header = public_bytes(ephs[i]) + ct + beta
        if i:
            beta = _xor(header, streams[i - 1])[: L - S]
    return header, keys


def seal_payload(key: bytes, header: bytes, body: bytes) -> bytes:
    """Pad ``body`` to the one payload size and seal it, bound to the header it travels with."""
    if len(body) > C.BODY_CAPACITY:
        raise VeilError(f"message of {len(body)} bytes exceeds the packet capacity of {C.BODY_CAPACITY}")
    plain = struct.pack("<I", len(body)) + body + bytes(C.BODY_CAPACITY - len(body))
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, plain, header)


def build_packet(path: list[Hop], routes: list[Routing], body: bytes) -> tuple[bytes, list[HopKeys]]:
    """A whole packet for ``path[0]``: the header and the first hop's payload."""
    header, keys = build_header(path, routes)
    return header + seal_payload(keys[0].payload, header, body), keys


def reseal(peeled: Peeled, body: bytes) -> bytes:
    """The packet a hop sends on: the next header and ``body`` sealed with the key its routing gave it."""
    return peeled.next_header + seal_payload(peeled.routing.next_payload_key, peeled.next_header, body)


class Peeler:
    """One party's view of packets addressed to it: its private key and its replay cache.

    The replay cache holds SHA-256 hashes of shared secrets seen (32 bytes each) for the key's lifetime;
    a new key (node restart) starts an empty cache, which is safe because old packets no longer decrypt.
    """

    def __init__(self, private_key: X25519PrivateKey | None = None) -> None:
        self._sk = private_key or generate_private_key()
        self.public_key = public_bytes(self._sk)
        self._seen: set[bytes] = set()

    def peel(self, packet: bytes) -> Peeled:
        """Remove one layer; raises ``PacketRejected`` naming the reason, and leaves state unchanged then."""
        if len(packet) != C.PACKET_SIZE:
            raise PacketRejected(f"wrong packet length {len(packet)} (every packet is {C.PACKET_SIZE} bytes)")
        S, L = C.SLOT_SIZE, C.HEADER_SIZE
        header, payload = packet[:L], packet[L:]
        eph, sealed, beta = header[: C.KEY_SIZE], header[C.KEY_SIZE : S], header[S:]
        try:
            keys = derive(self._sk.exchange(load_public(eph)))
        except (ValueError, VeilError) as exc:
            raise PacketRejected(f"bad ephemeral key ({exc})") from None
        if keys.replay in self._seen:
            raise PacketRejected("replayed packet (shared secret seen before)")
        try:
            routing = Routing.decode(ChaCha20Poly1305(keys.header).decrypt(_ZERO_NONCE, sealed, beta))
        except InvalidTag:
            raise PacketRejected("header authentication failed (tampered, or not addressed to this node)") from None
        try:
            plain = ChaCha20Poly1305(keys.payload).decrypt(_ZERO_NONCE, payload, header)
        except InvalidTag:
            raise PacketRejected("payload authentication failed (tampered payload)") from None
        (n,) = struct.unpack_from("<I", plain)
        if n > C.BODY_CAPACITY:
            raise PacketRejected("payload length field out of range")
        self._seen.add(keys.replay)  # only authenticated packets enter the cache: no cache flooding
        next_header = b"" if routing.is_final else _xor(beta + bytes(S), _stream(keys.stream, L))
        return Peeled(routing=routing, body=plain[4 : 4 + n], next_header=next_header, keys=keys)


def seal_e2e(key: bytes, plain: bytes, *, from_hop: bool) -> bytes:
    """Designer <-> one hop: content relays carry but cannot read. Each direction has its own nonce."""
    return ChaCha20Poly1305(key).encrypt(C.NONCE_FROM_HOP if from_hop else C.NONCE_TO_HOP, plain, None)


def open_e2e(key: bytes, sealed: bytes, *, from_hop: bool) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(C.NONCE_FROM_HOP if from_hop else C.NONCE_TO_HOP, sealed, None)
    except InvalidTag:
        raise PacketRejected("end-to-end content failed authentication") from None
