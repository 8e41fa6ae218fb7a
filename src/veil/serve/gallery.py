"""The server's gallery: enrolled embeddings and names, persisted as one safetensors file written atomically.

One file (embeddings as a tensor, names and the RecNet digest as JSON metadata) replaced with
``os.replace`` after an fsync, so a crash mid-write leaves the previous gallery intact and a restart
finds every enrolment that was acknowledged.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as st_save

from veil.errors import VeilError

FORMAT = "veil-gallery"


class Gallery:
    def __init__(self, path: str | Path, emb_dim: int, recnet_digest: str) -> None:
        self.path = Path(path)
        self.emb_dim, self.recnet_digest = emb_dim, recnet_digest
        self.embeddings = torch.empty(0, emb_dim)
        self.names: list[str] = []
        self.lock = threading.Lock()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
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
        names = json.loads(meta.get("names", "[]"))
        if emb is None or emb.ndim != 2 or emb.shape[1] != self.emb_dim or len(names) != len(emb):
            raise VeilError(f"gallery {self.path} is inconsistent (embeddings {None if emb is None else emb.shape}, "
                            f"{len(names)} names)")
        self.embeddings, self.names = emb.float(), list(names)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = st_save({"embeddings": self.embeddings.contiguous()},
                       metadata={"format": FORMAT, "recnet": self.recnet_digest, "names": json.dumps(self.names)})
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self.names)

    def enrol(self, name: str, embeddings: torch.Tensor) -> int:
        """Append one entry per embedding under ``name`` and persist before returning the gallery size."""
        with self.lock:
            emb = F.normalize(embeddings.float(), dim=1)
            self.embeddings = torch.cat([self.embeddings, emb])
            self.names.extend([name] * len(emb))
            self._save()
            return len(self.names)

    def identify(self, embeddings: torch.Tensor) -> list[dict]:
        """Nearest enrolled name (cosine) for each embedding; ``None`` with an empty gallery."""
        with self.lock:
            gallery, names = self.embeddings, list(self.names)
        if not names:
            return [{"name": None, "score": None} for _ in range(len(embeddings))]
        sims = F.normalize(embeddings.float(), dim=1) @ gallery.T
        score, idx = sims.max(dim=1)
        return [{"name": names[i], "score": round(float(s), 6)} for i, s in zip(idx.tolist(), score, strict=True)]
