"""Read a gallery in the old format (one safetensors file) so ``veil serve-gallery migrate`` can move it to a database.

Read-only: nothing here writes the old format any more. The file is parsed by safetensors (no
pickle); its metadata holds the names, who enrolled each name and the RecNet digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from veil.errors import VeilError

FORMAT = "veil-gallery"


@dataclass
class LegacyGallery:
    embeddings: torch.Tensor  # (n, emb_dim) float32
    names: list[str]  # one per row
    owners: dict[str, str | None]  # name -> the client that enrolled it first
    recnet: str  # RecNet digest the gallery was enrolled with


def read_legacy(path: str | Path) -> LegacyGallery:
    """The old gallery's rows, names, owners and RecNet digest; :class:`VeilError` for anything else."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            emb = f.get_tensor("embeddings") if "embeddings" in f.keys() else None
    except Exception as exc:
        raise VeilError(f"gallery {path} is not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise VeilError(f"{path} is not a Veil gallery file")
    try:
        names = json.loads(meta.get("names", "[]"))
        owners = json.loads(meta.get("owners", "{}"))
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(owners, dict)):
            raise ValueError("names must be a list of strings and owners an object")
    except ValueError as exc:
        raise VeilError(f"gallery {path} has corrupt metadata ({exc})") from None
    if emb is None or emb.ndim != 2 or len(names) != len(emb):
        raise VeilError(f"gallery {path} is inconsistent (embeddings {None if emb is None else tuple(emb.shape)}, "
                        f"{len(names)} names)")
    return LegacyGallery(emb.float(), list(names), {n: owners.get(n) for n in names}, str(meta.get("recnet", "")))
