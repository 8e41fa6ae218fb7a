"""The routing information one hop finds in its header slot, and its fixed-size encoding."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from veil.cascade import constants as C
from veil.errors import VeilError


@dataclass(frozen=True)
class Routing:
    """Everything a hop learns about the packet's route: its op and the *next* hop only."""

    op: int
    flags: int = 0
    tag: bytes = bytes(C.STEP_TAG_SIZE)  # links this hop's forward and backward, meaningless elsewhere
    next_address: str = ""  # empty for the final hop
    next_payload_key: bytes = bytes(C.KEY_SIZE)  # seals the payload this hop sends on
    cell: int = C.DEFAULT_CELL  # the run's payload size: the hop accepts and sends on only this size
    frag: int = 0  # STATE: which fragment of the target's state to return; BACKWARD: micro-batches per step
    window: int = 0  # the replay window the packet was built in (``constants.REPLAY_WINDOW_S``)
    extra: bytes = b""  # labels for the loss layer
    version: int = C.FORMAT_VERSION  # packet format; shares a byte with the flags (high nibble, 0 meaning v1)

    @property
    def is_target(self) -> bool:
        return bool(self.flags & C.FLAG_TARGET)

    @property
    def is_ping(self) -> bool:
        return self.op == C.OP_LOOP and bool(self.flags & C.FLAG_PING) and self.is_target

    @property
    def is_final(self) -> bool:
        return bool(self.flags & C.FLAG_FINAL)

    def encode(self) -> bytes:
        """Fixed ``ROUTING_SIZE`` bytes; raises VeilError when a field does not fit."""
        if self.op not in C.OPS:
            raise VeilError(f"unknown op {self.op}")
        addr = self.next_address.encode()
        if len(addr) > C.ADDRESS_SIZE:
            raise VeilError(f"address {self.next_address!r} is longer than {C.ADDRESS_SIZE} bytes")
        if len(self.extra) > C.EXTRA_SIZE:
            raise VeilError(f"routing extra of {len(self.extra)} bytes exceeds {C.EXTRA_SIZE} (batch too large)")
        if len(self.tag) != C.STEP_TAG_SIZE or len(self.next_payload_key) != C.KEY_SIZE:
            raise VeilError("routing tag or next payload key has the wrong length")
        if self.cell not in C.CELL_SIZES:
            raise VeilError(f"payload size {self.cell} is not one of the packet size classes")
        if not 0 <= self.frag < 1 << 16 or not 0 <= self.window < 1 << 32:
            raise VeilError("routing fragment or window out of range")
        if not 0 <= self.flags <= C.FLAGS_MASK or not 1 <= self.version <= C.FLAGS_MASK:
            raise VeilError("routing flags or format version out of range")
        version_flags = ((self.version if self.version > 1 else 0) << C.VERSION_SHIFT) | self.flags
        return struct.pack(C.ROUTING_FORMAT, self.op, version_flags, self.tag, addr, self.next_payload_key,
                           self.cell, self.window, self.frag, len(self.extra), self.extra)

    @classmethod
    def decode(cls, raw: bytes) -> Routing:
        if len(raw) != C.ROUTING_SIZE:
            raise VeilError(f"routing information must be {C.ROUTING_SIZE} bytes, got {len(raw)}")
        op, flags, tag, addr, key, cell, window, frag, n_extra, extra = struct.unpack(C.ROUTING_FORMAT, raw)
        if op not in C.OPS or n_extra > C.EXTRA_SIZE or cell not in C.CELL_SIZES:
            raise VeilError("routing information is malformed")
        try:
            address = addr.rstrip(b"\0").decode()
        except UnicodeDecodeError:  # a forged slot (anyone with the pool file can seal one): not a crash
            raise VeilError("routing information is malformed (next address is not UTF-8)") from None
        return cls(op=op, flags=flags & C.FLAGS_MASK, tag=tag, next_address=address, next_payload_key=key, cell=cell,
                   frag=frag, window=window, extra=extra[:n_extra], version=(flags >> C.VERSION_SHIFT) or 1)
