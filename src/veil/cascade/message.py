"""Bodies inside packets: a JSON header plus tensors as safetensors bytes. Never pickle across processes.

Layout: ``u32 meta_len || meta JSON (UTF-8) || safetensors bytes``. safetensors parses untrusted input
without executing anything; shapes and dtypes are still checked by whoever uses the tensors.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from veil.cascade import constants as C
from veil.errors import VeilError


def encode(meta: dict[str, Any] | None = None, tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    """Serialise a message; tensors are made contiguous CPU copies first."""
    m = json.dumps(meta or {}, separators=(",", ":")).encode()
    t = {k: v.detach().to("cpu").contiguous() for k, v in (tensors or {}).items()}
    return struct.pack("<I", len(m)) + m + (st_save(t) if t else b"")


def decode(raw: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Parse a message, raising VeilError on anything malformed."""
    try:
        (n,) = struct.unpack_from("<I", raw)
        meta = json.loads(raw[4 : 4 + n].decode())
        rest = raw[4 + n :]
        tensors = st_load(rest) if rest else {}
    except Exception as exc:  # noqa: BLE001 - any parse failure is one user-facing error
        raise VeilError(f"malformed message body ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise VeilError("malformed message body (meta is not an object)")
    return meta, tensors


def fragments(blob: bytes, size: int = C.FRAGMENT_SIZE) -> list[bytes]:
    """Split a blob larger than one packet into whole-packet fragments (at least one)."""
    return [blob[i : i + size] for i in range(0, max(len(blob), 1), size)]


class Reassembly:
    """Collects the fragments of one message; ``add`` returns the whole blob once the last one arrives."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, bytes]] = {}

    def add(self, msg: str, index: int, count: int, data: bytes) -> bytes | None:
        if not 0 <= index < count <= 10_000:
            raise VeilError(f"fragment {index} of {count} is out of range")
        parts = self._parts.setdefault(msg, {})
        parts[index] = data
        if len(parts) < count:
            return None
        del self._parts[msg]
        return b"".join(parts[i] for i in range(count))
