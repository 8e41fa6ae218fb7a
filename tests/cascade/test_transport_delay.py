"""transport_delay: every received packet is held for the link's one-way delay, in arrival order, and sending is
untouched (a dead address still fails at once). Loopback, SYNTHETIC bytes."""

from __future__ import annotations

import threading
import time

import pytest

from veil.cascade import transport
from veil.cascade.transport_delay import DelayedTransport
from veil.errors import VeilError


def test_each_packet_is_held_for_the_delay_and_released_in_order() -> None:
    delay = 0.05
    got: list[tuple[bytes, float]] = []
    done = threading.Event()
    rx, tx = transport.make("zmq", link_delay=delay), transport.make("zmq")
    assert isinstance(rx, DelayedTransport) and rx.name == "zmq"

    def arrived(p: bytes) -> None:
        got.append((p, time.monotonic()))
        if len(got) == 20:
            done.set()

    lst = rx.listen("127.0.0.1:0", arrived)
    lst.start()
    try:
        sent = []
        for i in range(20):
            sent.append(time.monotonic())
            tx.push(lst.address, bytes([i]) * 100)
        assert done.wait(10)
    finally:
        tx.close()
        rx.close()
    assert [p[0] for p, _ in got] == list(range(20))  # arrival order kept
    held = [t - s for (_, t), s in zip(got, sent, strict=True)]
    assert min(held) >= delay  # never early
    assert sorted(held)[10] < delay + 0.04  # and not much late (generous: a shared, loaded machine)
    stats = rx.stats.as_dict()
    assert stats["packets"] == 20 and 0 <= stats["late_mean_s"] <= stats["late_max_s"]


def test_without_a_delay_make_returns_the_plain_transport() -> None:
    t = transport.make("zmq")
    assert not isinstance(t, DelayedTransport)
    t.close()


def test_sending_to_a_dead_address_still_fails_at_once() -> None:
    t = transport.make("zmq", link_delay=1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(VeilError, match="cannot deliver"):
            t.push("127.0.0.1:9", b"x", timeout=0.3)
        assert time.monotonic() - t0 < 1.0  # the held delay applies on receipt, not to a failed send
    finally:
        t.close()


def test_an_absurd_delay_is_refused() -> None:
    with pytest.raises(VeilError, match="link delay"):
        DelayedTransport(transport.make("zmq"), 60.0)
