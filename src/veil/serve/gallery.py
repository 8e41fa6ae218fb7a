"""The server's gallery: enrolled embeddings and names, persisted as one safetensors file written atomically.

One file (embeddings as a tensor; names, who enrolled each name and the RecNet digest as JSON
metadata), written mode 0600 (names are personal data) through a unique temporary file, fsynced and
renamed, so a crash mid-write leaves the previous gallery intact and a restart finds every
acknowledged enrolment. A second server on the same file would keep its own copy in memory and
overwrite the first one's enrolments, so the gallery holds an exclusive lock (``flock`` on
``GALLERY.lock``) for the life of the process and a second server refuses to start.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as st_save

from veil.errors import VeilError
from veil.secretfile import write_private

FORMAT = "veil-gallery"


class GalleryLocked(VeilError):
    """Another process holds the gallery."""


class Gallery:
    def __init__(self, path: str | Path, emb_dim: int, recnet_digest: str) -> None:
        self.path = Path(path)
        self.emb_dim, self.recnet_digest = emb_dim, recnet_digest
        self.embeddings = torch.empty(0, emb_dim)
        self.names: list[str] = []
        self.owners: dict[str, str | None] = {}  # name -> client that enrolled it first (None: anonymous)
        self.lock = threading.Lock()
        self._lock_fd: int | None = self._acquire_file_lock()
        try:
            if self.path.exists():
                self._load()
        except BaseException:
            self.close()
            raise

    def _acquire_file_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise VeilError(f"cannot open the gallery lock {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GalleryLocked(f"gallery {self.path} is in use by another server (lock {lock_path} is held); "
                                "stop that server or give this one another --gallery") from None
        return fd

    def close(self) -> None:
        """Release the lock (the process exiting does the same)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load(self) -> None:
        if stat.S_IMODE(self.path.stat().st_mode) & 0o077:
            os.chmod(self.path, 0o600)  # a gallery written by an older Veil was 0644: names are personal data
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings") if "embeddings" in f.keys() else None
        except Exception as exc:
            raise VeilError(f"gallery {self.path} is not a readable safetensors file ({exc})") from None
        if meta.get("format") != FORMAT:
            raise VeilError(f"{self.path} is not a Veil gallery file")
        if meta.get("recnet") != self.recnet_digest:
            raise VeilError(f"gallery {self.path} was enrolled with another RecNet (digest {meta.get('recnet')}, "
                            f"server has {self.recnet_digest}); use a new --gallery")
        try:
            names = json.loads(meta.get("names", "[]"))
            owners = json.loads(meta.get("owners", "{}"))
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(owners, dict)):
                raise ValueError("names must be a list of strings and owners an object")
        except ValueError as exc:
            raise VeilError(f"gallery {self.path} has corrupt metadata ({exc})") from None
        if emb is None or emb.ndim != 2 or emb.shape[1] != self.emb_dim or len(names) != len(emb):
            raise VeilError(f"gallery {self.path} is inconsistent (embeddings {None if emb is None else emb.shape}, "
                            f"{len(names)} names)")
        self.embeddings, self.names = emb.float(), list(names)
        self.owners = {n: owners.get(n) for n in names}

    def _save(self, embeddings: torch.Tensor, names: list[str], owners: dict[str, str | None]) -> None:
        body = st_save({"embeddings": embeddings.contiguous()},
                       metadata={"format": FORMAT, "recnet": self.recnet_digest, "names": json.dumps(names),
                                 "owners": json.dumps(owners)})
        write_private(self.path, body)

    def __len__(self) -> int:
        return len(self.names)

    def owner_of(self, name: str) -> str | None:
        return self.owners.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.owners

    def enrol(self, name: str, embeddings: torch.Tensor, client: str | None = None) -> int:
        """Append one entry per embedding under ``name`` and persist before returning the gallery size.

        Non-finite or zero embeddings are refused (``ValueError``), so nothing stored can turn every
        later answer for that name into ``NaN`` (issue 12, finding 2). Memory changes only once the
        file is written.
        """
        emb = embeddings.float()
        if emb.ndim != 2 or emb.shape[1] != self.emb_dim:
            raise ValueError(f"embeddings must be (n, {self.emb_dim}), got {tuple(emb.shape)}")
        if not torch.isfinite(emb).all():
            raise ValueError("the features give a non-finite embedding; nothing was stored")
        if (emb.norm(dim=1) <= 1e-12).any():
            raise ValueError("the features give a zero embedding; nothing was stored")
        emb = F.normalize(emb, dim=1)
        with self.lock:
            embeddings_new = torch.cat([self.embeddings, emb])
            names_new = self.names + [name] * len(emb)
            owners_new = dict(self.owners)
            owners_new.setdefault(name, client)
            self._save(embeddings_new, names_new, owners_new)
            self.embeddings, self.names, self.owners = embeddings_new, names_new, owners_new
            return len(self.names)

    def delete(self, name: str) -> int:
        """Remove every entry of ``name``; returns how many were removed (0 when absent)."""
        with self.lock:
            keep = [i for i, n in enumerate(self.names) if n != name]
            removed = len(self.names) - len(keep)
            if removed:
                embeddings_new = self.embeddings[keep]
                names_new = [self.names[i] for i in keep]
                owners_new = {n: o for n, o in self.owners.items() if n != name}
                self._save(embeddings_new, names_new, owners_new)
                self.embeddings, self.names, self.owners = embeddings_new, names_new, owners_new
            return removed

    def listing(self) -> list[dict]:
        """One row per name: entries, who enrolled it, and whether all its embeddings are finite."""
        with self.lock:
            names, emb, owners = list(self.names), self.embeddings, dict(self.owners)
        finite = torch.isfinite(emb).all(dim=1).tolist() if len(names) else []
        rows: dict[str, dict] = {}
        for n, ok in zip(names, finite, strict=True):
            row = rows.setdefault(n, {"name": n, "entries": 0, "enrolled_by": owners.get(n), "finite": True})
            row["entries"] += 1
            row["finite"] = row["finite"] and bool(ok)
        return list(rows.values())

    def identify(self, embeddings: torch.Tensor) -> list[dict]:
        """Nearest enrolled name (cosine) for each embedding; ``None`` with an empty gallery.

        Rows that are not finite (a gallery poisoned before this check existed) never win a match.
        """
        with self.lock:
            gallery, names = self.embeddings, list(self.names)
        if not names:
            return [{"name": None, "score": None} for _ in range(len(embeddings))]
        valid = torch.isfinite(gallery).all(dim=1)
        if not valid.any():
            return [{"name": None, "score": None} for _ in range(len(embeddings))]
        sims = F.normalize(embeddings.float(), dim=1) @ torch.nan_to_num(gallery).T
        sims = sims.masked_fill(~valid.unsqueeze(0), float("-inf"))
        score, idx = sims.max(dim=1)
        return [{"name": names[i], "score": round(float(s), 6)} for i, s in zip(idx.tolist(), score, strict=True)]
