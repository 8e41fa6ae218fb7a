"""The owner's alignment cache: where the faces are in each image, keyed by the image's digest and the
pipeline's version, in one SQLite file under ``VEIL_CACHE`` (never in a store, never sent anywhere).

Why geometry and not chip pixels: a found face is a box and 5 points (~200 bytes), while a 150 px chip is
~40 KiB even as PNG (430 MiB for LFW). Detection and landmarks are the cost (~13 ms); re-warping from a cached
geometry is ~0.2 ms and gives the identical chip (``dlib.get_face_chip`` is deterministic), at any chip size.
Workers read it concurrently (WAL); only the parent process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from veil.faces.geometry import Geometry
from veil.paths import cache_dir

SCHEMA = ("CREATE TABLE IF NOT EXISTS alignment (digest TEXT NOT NULL, version TEXT NOT NULL, "
          "geometry TEXT NOT NULL, PRIMARY KEY (digest, version))")


def image_digest(data: bytes) -> str:
    """SHA-256 of the image file's bytes: the same photo under any name is aligned once."""
    return hashlib.sha256(data).hexdigest()


def default_cache_path() -> Path:
    return cache_dir() / "faces" / "alignments.sqlite"


class AlignmentCache:
    """digest + version -> :class:`Geometry`. ``readonly`` connections are for worker processes."""

    def __init__(self, path: str | Path | None = None, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        if readonly:
            self.db: sqlite3.Connection | None = (
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30) if self.path.exists() else None)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(self.path, timeout=30)
        os.chmod(self.path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.db.commit()

    def get(self, digest: str, version: str) -> Geometry | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute("SELECT geometry FROM alignment WHERE digest = ? AND version = ?",
                                  (digest, version)).fetchone()
        except sqlite3.DatabaseError:  # a damaged or foreign file: treated as empty, never trusted
            return None
        return Geometry.from_dict(json.loads(row[0])) if row else None

    def put_many(self, rows: Iterable[tuple[str, str, Geometry]]) -> None:
        assert self.db is not None
        self.db.executemany("INSERT OR REPLACE INTO alignment VALUES (?, ?, ?)",
                            [(d, v, json.dumps(g.to_dict())) for d, v, g in rows])
        self.db.commit()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
