"""The server directory: a JSON file every node registers in, and the designer reads.

Format (``version`` 1)::

    {"version": 1, "servers": [
        {"address": "127.0.0.1:50051", "public_key": "<64 hex chars>", "pid": 1234, "registered_at": 1.7e9,
         "transport": "zmq"}
    ]}

``transport`` names how the node is reached (``zmq`` or ``grpc``; absent in files written before it existed,
which meant ``grpc``). The pool is public: anyone who reads it can build *open* packets for a node, which is
why a node gives those no power over a layer (sessions, see ``node.py``).

Writers take an exclusive ``fcntl`` lock on ``POOL.lock`` and replace the file atomically, so many nodes
can start at once. A public key is all the pool holds; private keys never leave the node.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from veil.cascade import constants as C
from veil.cascade.packet import Hop
from veil.errors import VeilError
from veil.io import write_json


@dataclass(frozen=True)
class Entry:
    address: str
    public_key: bytes
    pid: int = 0
    registered_at: float = 0.0
    transport: str = C.DEFAULT_TRANSPORT

    @property
    def hop(self) -> Hop:
        return Hop(self.address, self.public_key)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(path: str | Path) -> list[Entry]:
    """Every registered server; a missing file is an empty pool, a malformed one a VeilError."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        raw = json.loads(p.read_text() or '{"version": 1, "servers": []}')
        entries = [Entry(s["address"], bytes.fromhex(s["public_key"]), int(s.get("pid", 0)),
                         float(s.get("registered_at", 0.0)), str(s.get("transport", "grpc")))
                   for s in raw["servers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise VeilError(f"pool file {p} is malformed ({type(exc).__name__}: {exc})") from None
    for e in entries:
        if len(e.public_key) != C.KEY_SIZE:
            raise VeilError(f"pool file {p}: {e.address} has a public key of {len(e.public_key)} bytes")
    return entries


def save(path: str | Path, entries: list[Entry]) -> None:
    """Write a whole pool (used by tools and tests to make a sub-pool); atomic replace."""
    p = Path(path)
    data = {"version": 1, "servers": [{"address": e.address, "public_key": e.public_key.hex(), "pid": e.pid,
                                       "registered_at": e.registered_at, "transport": e.transport}
                                      for e in entries]}
    write_json(p, data, indent=1)


def register(path: str | Path, address: str, public_key: bytes, transport: str = C.DEFAULT_TRANSPORT) -> Entry:
    """Add (or replace, by address) this server's entry."""
    p = Path(path)
    entry = Entry(address, public_key, os.getpid(), time.time(), transport)
    with _locked(p):
        entries = [e for e in load(p) if e.address != address]
        save(p, entries + [entry])
    return entry


def unregister(path: str | Path, address: str) -> None:
    """Remove a server's entry, if present (a node does this on a clean shutdown)."""
    p = Path(path)
    with _locked(p):
        save(p, [e for e in load(p) if e.address != address])


def remove(path: str | Path, addresses: set[str]) -> list[Entry]:
    """Remove every entry whose address is in ``addresses`` (``veil cascade pool prune``); returns those removed."""
    p = Path(path)
    with _locked(p):
        entries = load(p)
        save(p, [e for e in entries if e.address not in addresses])
    return [e for e in entries if e.address in addresses]
