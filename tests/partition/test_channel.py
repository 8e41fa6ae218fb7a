"""The enclave channel: authenticated encryption with counters; tampering, replay and reordering are rejected."""

from __future__ import annotations

import socket
import threading

import pytest

from veil.partition.channel import ChannelError, enclave_handshake, host_handshake


def _pair() -> tuple:
    a, b = socket.socketpair()
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("enclave", enclave_handshake(b, b"m" * 32)))
    t.start()
    host, measurement = host_handshake(a)
    t.join()
    a.close()
    b.close()
    return host, box["enclave"], measurement


def test_round_trip_both_directions() -> None:
    host, enclave, measurement = _pair()
    assert measurement == b"m" * 32
    assert enclave.open(host.seal(b"input")) == b"input"
    assert host.open(enclave.seal(b"features")) == b"features"
    assert enclave.open(host.seal(b"second")) == b"second"


def test_ciphertext_hides_plaintext() -> None:
    host, _enclave, _ = _pair()
    frame = host.seal(b"secret pixels" * 4)
    assert b"secret pixels" not in frame


def test_tampered_message_rejected() -> None:
    host, enclave, _ = _pair()
    frame = bytearray(host.seal(b"input tensor"))
    frame[12] ^= 0x01
    with pytest.raises(ChannelError, match="failed authentication"):
        enclave.open(bytes(frame))


def test_replayed_and_reordered_messages_rejected() -> None:
    host, enclave, _ = _pair()
    first, second = host.seal(b"one"), host.seal(b"two")
    with pytest.raises(ChannelError, match="reordered"):
        enclave.open(second)
    assert enclave.open(first) == b"one"
    with pytest.raises(ChannelError, match="replayed"):
        enclave.open(first)


def test_direction_keys_differ() -> None:
    host, enclave, _ = _pair()
    frame = host.seal(b"reflected back")
    with pytest.raises(ChannelError, match="failed authentication"):
        host.open(frame)  # a host message reflected back to the host is not accepted
    assert enclave.open(frame) == b"reflected back"  # it was valid only in its own direction


def test_wrong_measurement_refused() -> None:
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: enclave_handshake(b, b"x" * 32))
    t.start()
    with pytest.raises(ChannelError, match="measurement"):
        host_handshake(a, expected_measurement=b"y" * 32)
    t.join()
    a.close()
    b.close()
