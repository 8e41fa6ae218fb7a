"""``veil serve-gallery migrate OLD NEW``: move a gallery from the old safetensors file into a database.

The RecNet is given so the new database records the digest the server will check (and a gallery
enrolled with another RecNet is refused, as the server would). Each name is one enrol transaction
under its first owner, so what the service's rules allow is what the migration writes: rows that
are not finite (stored by servers older than the check) are skipped and counted, and a name that
is a look-alike of an earlier one (:mod:`veil.serve.names`) is merged into it and reported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from veil.errors import VeilError
from veil.serve.gallery import Gallery
from veil.serve.legacy import read_legacy
from veil.serve.names import canonical


def migrate_gallery(old: str | Path, new: str, recnet: str | Path) -> dict:
    """Copy ``old`` into the database ``new``; a summary of what was copied, skipped and merged."""
    from veil.models.recnet import load_recnet
    from veil.serve.app import file_digest

    legacy = read_legacy(old)
    model, _ = load_recnet(recnet)
    digest = file_digest(recnet)
    if legacy.recnet != digest:
        raise VeilError(f"{old} was enrolled with another RecNet (digest {legacy.recnet}; {recnet} is {digest})")
    if legacy.embeddings.shape[1] != model.cfg.emb_dim:
        raise VeilError(f"{old} holds embeddings of size {legacy.embeddings.shape[1]}, the RecNet gives "
                        f"{model.cfg.emb_dim}")
    gallery = Gallery(new, model.cfg.emb_dim, digest)
    try:
        if len(gallery):
            raise VeilError(f"{new} already holds {len(gallery)} entries: migrate into a new gallery")
        finite = torch.isfinite(legacy.embeddings).all(dim=1) & (legacy.embeddings.norm(dim=1) > 1e-12)
        merged, entries = [], 0
        for name in dict.fromkeys(legacy.names):  # first-enrolled order
            rows = [i for i, n in enumerate(legacy.names) if n == name and bool(finite[i])]
            if not rows:
                continue
            stored, _ = gallery.enrol(name, legacy.embeddings[rows], legacy.owners.get(name), admin=True)
            if stored != canonical(name):
                merged.append(f"{name} -> {stored}")
            entries += len(rows)
        return {"entries": entries, "names": len(gallery.listing()), "skipped": int((~finite).sum()),
                "merged": merged}
    finally:
        gallery.close()
