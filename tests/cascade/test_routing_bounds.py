"""Routing's encoder and decoder at every field's boundary: the largest value that fits round-trips, one more is
a VeilError naming the field (never a struct.error), and each malformed-slot check stands on its own.
Written for the routing.py mutation survivors (bench/results/mutation.json); SYNTHETIC values."""

from __future__ import annotations

import struct

import pytest

from veil.cascade import constants as C
from veil.cascade.routing import Routing
from veil.errors import VeilError

OP = next(iter(C.OPS))


def _ok(**kw) -> Routing:
    r = Routing(OP, **kw)
    assert Routing.decode(r.encode()) == r
    return r


@pytest.mark.parametrize("field, fits, too_big, message", [
    ("next_address", "a" * C.ADDRESS_SIZE, "a" * (C.ADDRESS_SIZE + 1),
     rf"^address '.*' is longer than {C.ADDRESS_SIZE} bytes$"),
    ("extra", bytes(C.EXTRA_SIZE), bytes(C.EXTRA_SIZE + 1), rf"^routing extra of {C.EXTRA_SIZE + 1} bytes exceeds"),
    ("frag", (1 << 16) - 1, 1 << 16, r"^routing fragment or window out of range$"),
    ("window", (1 << 32) - 1, 1 << 32, r"^routing fragment or window out of range$"),
])
def test_largest_value_fits_one_more_is_refused(field, fits, too_big, message) -> None:
    _ok(**{field: fits})
    with pytest.raises(VeilError, match=message):
        Routing(OP, **{field: too_big}).encode()


@pytest.mark.parametrize("kw", [dict(frag=-1), dict(window=-1), dict(frag=1 << 16, window=0),
                                dict(frag=0, window=1 << 32)])
def test_each_range_check_alone(kw) -> None:
    with pytest.raises(VeilError, match="^routing fragment or window out of range$"):
        Routing(OP, **kw).encode()


@pytest.mark.parametrize("kw", [dict(tag=bytes(C.STEP_TAG_SIZE - 1)), dict(next_payload_key=bytes(C.KEY_SIZE + 1))])
def test_tag_or_key_of_the_wrong_length_alone(kw) -> None:
    with pytest.raises(VeilError, match="^routing tag or next payload key has the wrong length$"):
        Routing(OP, **kw).encode()


def test_unknown_op_and_cell() -> None:
    bad_op = max(C.OPS) + 1
    with pytest.raises(VeilError, match=f"^unknown op {bad_op}$"):
        Routing(bad_op).encode()
    with pytest.raises(VeilError, match="^payload size 1000 is not one of the packet size classes$"):
        Routing(OP, cell=1000).encode()


def _raw(op=OP, n_extra=0, cell=C.DEFAULT_CELL, addr=b"") -> bytes:
    return struct.pack(C.ROUTING_FORMAT, op, 0, bytes(C.STEP_TAG_SIZE), addr, bytes(C.KEY_SIZE), cell, 0, 0,
                       n_extra, bytes(C.EXTRA_SIZE))


@pytest.mark.parametrize("raw", [_raw(op=max(C.OPS) + 1), _raw(n_extra=C.EXTRA_SIZE + 1), _raw(cell=1000)],
                         ids=["op", "n_extra", "cell"])
def test_each_malformed_slot_check_alone(raw: bytes) -> None:
    with pytest.raises(VeilError, match="^routing information is malformed$"):
        Routing.decode(raw)


def test_decoder_edges() -> None:
    assert len(Routing.decode(_raw(n_extra=C.EXTRA_SIZE)).extra) == C.EXTRA_SIZE
    assert Routing.decode(_raw(addr=b"host:X")).next_address == "host:X"  # only zero padding is stripped
    with pytest.raises(VeilError, match="^routing information is malformed \\(next address is not UTF-8\\)$"):
        Routing.decode(_raw(addr=b"\xff\xfe"))
    with pytest.raises(VeilError, match=f"^routing information must be {C.ROUTING_SIZE} bytes, got 3$"):
        Routing.decode(b"abc")
