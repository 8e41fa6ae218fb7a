"""veil.cascade.packet's pieces at their boundaries: the replay cache's window arithmetic (what is kept, what is
dropped, which windows are accepted), session binding, the explicit replay window, the payload capacity, the
end-to-end nonces, and the refusals' messages. In process, no network; SYNTHETIC bodies. Written for the
packet.py mutation survivors (bench/mutation.py)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from veil.cascade import constants as C
from veil.cascade.packet import (
    Hop,
    PacketRejected,
    Peeler,
    ReplayCache,
    build_header,
    build_packet,
    current_window,
    open_e2e,
    seal_e2e,
    seal_packet,
    seal_payload,
)
from veil.cascade.routing import Routing
from veil.errors import VeilError

FAR = 1_000_000 * C.REPLAY_WINDOW_S + 7.0  # a fixed clock far from today's: nothing may read the real time
W = current_window(FAR)


class Clock:
    def __init__(self, t: float = FAR) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def to_window(self, w: int) -> None:
        self.t = w * C.REPLAY_WINDOW_S + 1.0


def two_hops(first: Peeler, session: bytes | None = None) -> list[Hop]:
    return [Hop("127.0.0.1:1", first.public_key, session), Hop("127.0.0.1:2", Peeler().public_key)]


def routes(n: int = 2) -> list[Routing]:
    return [Routing(op=C.OP_FORWARD)] * n


# --- the replay cache ----------------------------------------------------------------------------------------
def test_current_window_is_the_minute_count() -> None:
    assert current_window(FAR) == 1_000_000 and current_window(FAR + C.REPLAY_WINDOW_S) == 1_000_001
    assert current_window(FAR - 8.0) == 999_999


def test_the_cache_follows_its_clock_not_the_real_time() -> None:
    cache = ReplayCache(Clock())
    assert cache.check_window(W) is None  # the real time is decades away from FAR: it would be stale


SKEW_WINDOWS = int(C.CLOCK_SKEW_S // C.REPLAY_WINDOW_S)  # 2: the clock sits 1 s into window W


@pytest.mark.parametrize("delta", range(-SKEW_WINDOWS, SKEW_WINDOWS + 1))
def test_every_window_within_the_stated_clock_skew_is_accepted(delta: int) -> None:
    assert ReplayCache(Clock()).check_window(W + delta) is None


@pytest.mark.parametrize("delta", [-SKEW_WINDOWS - 1, -50])
def test_older_windows_are_refused_as_stale(delta: int) -> None:
    reason = ReplayCache(Clock()).check_window(W + delta)
    assert reason == f"stale packet (window {W + delta}, this hop is in window {W}; replay cache rotated)"


@pytest.mark.parametrize("delta", [SKEW_WINDOWS + 1, 50])
def test_later_windows_are_refused_as_future_naming_the_tolerance(delta: int) -> None:
    reason = ReplayCache(Clock()).check_window(W + delta)
    assert reason == (f"future packet (window {W + delta}, this hop is in window {W}: clock skew over "
                      f"{C.CLOCK_SKEW_S:g} s)")


def test_tags_of_the_previous_window_are_kept_and_older_ones_dropped() -> None:
    clock = Clock()
    cache = ReplayCache(clock)
    cache.add(W, b"a" * 32)
    cache.add(W + 1, b"b" * 32)
    assert len(cache) == 2 and cache.seen(b"a" * 32) and cache.seen(b"b" * 32)
    clock.to_window(W + SKEW_WINDOWS)  # W is as old as the skew allows: its tags still block replays
    assert cache.check_window(W + SKEW_WINDOWS) is None
    assert cache.seen(b"a" * 32) and len(cache) == 2
    clock.to_window(W + SKEW_WINDOWS + 1)  # packets from W are now stale, so its tags can go
    assert not cache.seen(b"a" * 32) and cache.seen(b"b" * 32) and len(cache) == 1  # seen() rotates on the clock
    cache.add(W + 2, b"c" * 32)  # add rotates too
    clock.to_window(W + 2 + SKEW_WINDOWS + 2)
    cache.add(W + 2 + SKEW_WINDOWS + 2, b"d" * 32)
    assert len(cache) == 1 and cache.seen(b"d" * 32) and not cache.seen(b"c" * 32)


def test_len_counts_tags_over_windows_and_clear_empties() -> None:
    cache = ReplayCache(Clock())
    assert len(cache) == 0
    for i, w in enumerate((W - 1, W, W, W + 1)):
        cache.add(w, bytes([i]) * 32)
    cache.add(W, bytes([1]) * 32)  # the same tag twice counts once
    assert len(cache) == 4
    cache.clear()
    assert len(cache) == 0 and not cache.seen(bytes([1]) * 32)


# --- the peeler's replay window, through real packets ---------------------------------------------------------
def test_an_explicit_window_is_the_one_the_packet_carries() -> None:
    clock = Clock()
    p = Peeler(clock=clock)
    pkt, _ = build_packet(two_hops(p), routes(), b"x", window=W - 1)
    assert p.peel(pkt).routing.window == W - 1
    too_old = W - SKEW_WINDOWS - 1
    old, _ = build_packet(two_hops(p), routes(), b"x", window=too_old)
    with pytest.raises(PacketRejected, match=rf"^stale packet \(window {too_old}, this hop is in window {W};"):
        p.peel(old)


def test_without_a_window_the_packet_carries_the_current_one() -> None:
    p = Peeler()
    pkt, _ = build_packet(two_hops(p), routes(), b"x")
    assert abs(p.peel(pkt).routing.window - current_window()) <= 1  # a minute may turn between the two calls


def test_a_replay_from_the_previous_window_is_still_refused() -> None:
    clock = Clock()
    p = Peeler(clock=clock)
    pkt, _ = build_packet(two_hops(p), routes(), b"x", window=W)
    p.peel(pkt)
    clock.to_window(W + 1)
    with pytest.raises(PacketRejected, match="^replayed packet"):
        p.peel(pkt)
    assert p.cache_size == 1


def test_a_replay_after_its_windows_passed_is_stale_not_replayed() -> None:
    """Issue 24, finding 6: the cache rotated only on accepted packets, so 40 packets replayed after their
    session closed were refused as "replayed" (their tags still cached) rather than "stale"."""
    clock = Clock()
    p = Peeler(clock=clock)
    pkt, _ = build_packet(two_hops(p), routes(), b"x", window=W)
    p.peel(pkt)
    clock.to_window(W + SKEW_WINDOWS + 1)  # no packet accepted since: only the clock moved
    with pytest.raises(PacketRejected, match="^stale packet"):
        p.peel(pkt)
    assert p.cache_size == 0


def test_a_clock_within_the_stated_skew_is_accepted_and_one_beyond_is_refused() -> None:
    """Issue 24, finding 6: a node at +90 s was taken for crashed; the skew the windows tolerate is stated."""
    clock = Clock()
    node = Peeler(clock=clock)
    for skew in (90.0, -90.0, C.CLOCK_SKEW_S - 1):
        pkt, _ = build_packet(two_hops(node), routes(), b"x", window=current_window(clock.t + skew))
        node.peel(pkt)
    far, _ = build_packet(two_hops(node), routes(), b"x", window=current_window(clock.t - 150.0 - C.REPLAY_WINDOW_S))
    with pytest.raises(PacketRejected, match="^stale packet"):
        node.peel(far)


# --- sessions ------------------------------------------------------------------------------------------------
def test_bind_checks_the_secret_length() -> None:
    p = Peeler()
    for size in (C.SESSION_SECRET_SIZE - 1, C.SESSION_SECRET_SIZE + 1, 0):
        with pytest.raises(VeilError, match=f"^session secret must be {C.SESSION_SECRET_SIZE} bytes$"):
            p.bind(os.urandom(size))
    assert not p.bound


def test_session_packets_authenticate_under_the_bound_secret() -> None:
    p = Peeler(clock=Clock())
    secret = bytearray(os.urandom(C.SESSION_SECRET_SIZE))
    p.bind(secret)
    assert p.bound
    sealed_with = bytes(secret)
    secret[:] = bytes(len(secret))  # the peeler keeps its own copy
    pkt, keys = build_packet(two_hops(p, sealed_with), routes(), b"hello", window=W)
    peeled = p.peel(pkt)
    assert peeled.session and peeled.body == b"hello" and peeled.keys == keys[0]
    # a fresh random nonce per slot: two packets under one session never share their first 32 bytes
    again, _ = build_packet(two_hops(p, sealed_with), routes(), b"hello", window=W)
    assert again[: C.KEY_SIZE] != pkt[: C.KEY_SIZE] and p.peel(again).session


def test_rebinding_the_same_secret_keeps_the_cache_a_new_one_clears_it() -> None:
    p = Peeler(clock=Clock())
    secret = os.urandom(C.SESSION_SECRET_SIZE)
    p.bind(secret)
    pkt, _ = build_packet(two_hops(p, secret), routes(), b"x", window=W)
    p.peel(pkt)
    p.bind(secret)
    with pytest.raises(PacketRejected, match="^replayed packet"):
        p.peel(pkt)
    assert p.cache_size == 1
    p.bind(os.urandom(C.SESSION_SECRET_SIZE))
    assert p.cache_size == 0


def test_unbind_forgets_the_secret_and_its_cache() -> None:
    p = Peeler(clock=Clock())
    secret = os.urandom(C.SESSION_SECRET_SIZE)
    p.bind(secret)
    p.peel(build_packet(two_hops(p, secret), routes(), b"x", window=W)[0])
    p.unbind()
    assert not p.bound and p.cache_size == 0
    with pytest.raises(PacketRejected, match="^header authentication failed"):
        p.peel(build_packet(two_hops(p, secret), routes(), b"x", window=W)[0])


# --- building and sealing ------------------------------------------------------------------------------------
def test_one_routing_entry_per_hop() -> None:
    p = Peeler()
    for n in (1, 3):
        with pytest.raises(VeilError, match="^one routing entry per hop is required$"):
            build_header(two_hops(p), routes(n))


def test_a_body_of_exactly_the_capacity_fits_one_more_byte_does_not() -> None:
    cell = C.CELL_SIZES[0]
    cap = C.body_capacity(cell)
    p = Peeler(clock=Clock())
    body = os.urandom(cap)
    pkt, _ = build_packet(two_hops(p), routes(), body, cell, window=W)
    assert len(pkt) == C.packet_size(cell) and p.peel(pkt).body == body
    with pytest.raises(VeilError, match=f"^message of {cap + 1} bytes exceeds the packet capacity of {cap}$"):
        build_packet(two_hops(p), routes(), body + b"!", cell, window=W)


def test_seal_payload_is_the_payload_part_of_seal_packet() -> None:
    p = Peeler(clock=Clock())
    cell = C.CELL_SIZES[0]
    header, keys = build_header(two_hops(p), routes(), cell, window=W)
    payload = seal_payload(keys[0].payload, header, b"body", cell)
    assert len(payload) == cell
    assert payload == seal_packet(keys[0].payload, header, b"body", cell)[len(header):]
    peeled = p.peel(header + payload)
    assert peeled.body == b"body"


def test_end_to_end_directions_use_their_own_nonces() -> None:
    key = os.urandom(32)
    aead = ChaCha20Poly1305(key)
    to_hop, from_hop = seal_e2e(key, b"spec", from_hop=False), seal_e2e(key, b"reply", from_hop=True)
    assert to_hop == aead.encrypt(C.NONCE_TO_HOP, b"spec", None)
    assert from_hop == aead.encrypt(C.NONCE_FROM_HOP, b"reply", None)
    assert open_e2e(key, from_hop, from_hop=True) == b"reply"
    assert open_e2e(key, to_hop, from_hop=False) == b"spec"


@pytest.mark.parametrize("from_hop", [False, True])
def test_end_to_end_failure_message(from_hop: bool) -> None:
    key = os.urandom(32)
    sealed = seal_e2e(key, b"x", from_hop=not from_hop)
    with pytest.raises(PacketRejected, match="^end-to-end content failed authentication$"):
        open_e2e(key, sealed, from_hop=from_hop)


# --- what each hop's routing carries, and the peeler's refusals ----------------------------------------------
def test_each_hop_gets_its_own_tag_frag_and_flags_and_only_the_last_is_final() -> None:
    peelers = [Peeler(clock=Clock()) for _ in range(3)]
    hops = [Hop(f"127.0.0.1:{i + 1}", p.public_key) for i, p in enumerate(peelers)]
    given = [Routing(op=C.OP_STATE, flags=C.FLAG_TARGET | C.FLAG_FINAL, tag=b"tag-one!", frag=7),
             Routing(op=C.OP_FORWARD, tag=b"tag-two!", frag=65535),
             Routing(op=C.OP_LOOP, flags=C.FLAG_TARGET, tag=b"tag-end!", frag=0)]
    pkt, _ = build_packet(hops, given, b"x", window=W)
    seen = []
    for i, p in enumerate(peelers):
        peeled = p.peel(pkt)
        seen.append((peeled.routing.op, peeled.routing.tag, peeled.routing.frag, peeled.routing.is_target,
                     peeled.routing.is_final))
        if i < 2:
            assert len(peeled.next_header) == C.HEADER_SIZE
            pkt = seal_packet(peeled.routing.next_payload_key, peeled.next_header, peeled.body, peeled.routing.cell)
        else:
            assert peeled.next_header == b""  # the destination sends nothing on
    # a caller's FINAL flag on a middle hop is cleared, its TARGET flag kept; the last hop is always final
    assert seen == [(C.OP_STATE, b"tag-one!", 7, True, False), (C.OP_FORWARD, b"tag-two!", 65535, False, False),
                    (C.OP_LOOP, b"tag-end!", 0, True, True)]


def test_wrong_packet_length_reason() -> None:
    with pytest.raises(PacketRejected) as info:
        Peeler().peel(bytes(100))
    assert str(info.value) == (f"wrong packet length 100 (packets are the {C.HEADER_SIZE}-byte header plus one of "
                               "the payload size classes)")


def test_a_low_order_ephemeral_key_is_rejected_with_the_reason() -> None:
    p = Peeler(clock=Clock())
    pkt = bytearray(build_packet(two_hops(p), routes(), b"x", window=W)[0])
    pkt[: C.KEY_SIZE] = bytes(C.KEY_SIZE)  # the all-zero point: X25519 gives an all-zero shared secret
    with pytest.raises(PacketRejected, match=r"^bad ephemeral key \(.+\)$"):
        p.peel(bytes(pkt))


def test_resized_and_tampered_payload_reasons() -> None:
    p = Peeler(clock=Clock())
    small, big = C.CELL_SIZES[0], C.CELL_SIZES[1]
    header, keys = build_header(two_hops(p), routes(), big, window=W)
    resized = seal_packet(keys[0].payload, header, b"x", small)
    with pytest.raises(PacketRejected) as info:
        p.peel(resized)
    assert str(info.value) == f"payload of {small} bytes, but the header announces {big} (resized in transit)"
    bad = bytearray(seal_packet(keys[0].payload, header, b"x", big))
    bad[-1] ^= 1
    with pytest.raises(PacketRejected) as info:
        p.peel(bytes(bad))
    assert str(info.value) == "payload authentication failed (tampered payload)"


@pytest.mark.parametrize("announced", [None, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
def test_an_authenticated_length_field_beyond_the_capacity_is_refused(announced: int | None) -> None:
    # a previous hop holds this hop's payload key, so it can seal any length field: one past the capacity, and
    # values with the top bit set (a signed read would make them negative and slip under the bound)
    cell = C.CELL_SIZES[0]
    cap = C.body_capacity(cell)
    n = cap + 1 if announced is None else announced
    p = Peeler(clock=Clock())
    header, keys = build_header(two_hops(p), routes(), cell, window=W)
    plain = n.to_bytes(4, "little") + bytes(cell - C.TAG_SIZE - 4)
    payload = AESGCM(keys[0].payload).encrypt(bytes(C.NONCE_SIZE), plain, header)
    with pytest.raises(PacketRejected) as info:
        p.peel(header + payload)
    assert str(info.value) == "payload length field out of range"
    assert p.cache_size == 0  # refused packets leave no tag behind
