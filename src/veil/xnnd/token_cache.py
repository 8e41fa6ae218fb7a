"""The owner's clean ExtNet tokens, extracted once per group and kept on the owner's disk under ``runs/``.

With the dlib face ResNet at 150 px, running ExtNet is most of an XNN-d run on CPU, while everything
that follows (stage 1 with a token-input noise encoder, distillation, every attack) works on the
(n, N, D) tokens. So each group (owner_train, owner_test, aux_a, aux_b) goes through ExtNet once,
as is and mirrored, and is written as one safetensors file per group:

    <root>/<extnet digest>-<split key>/<group>.safetensors   tokens, flipped (float32), labels (int64)

The files hold raw ExtNet tokens of the owner's private images: they live in the owner's run
directory (``runs/`` is git-ignored), never in the shared cache (``~/.cache/veil``), and are written
0600. A file is reused only when its metadata names the same ExtNet digest, dataset digest and
identity list; anything else is extracted again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from veil.errors import VeilError
from veil.io import read_safetensors_metadata
from veil.models.extractor import Extractor, extnet_digest
from veil.secretfile import write_private

FORMAT = "veil-xnnd-tokens"
DEFAULT_ROOT = Path("runs/xnnd-tokens")


@dataclass
class TokenGroup:
    """Raw ExtNet tokens of one identity group: ``tokens`` and ``flipped`` (mirrors, or None) are (n, N, D)."""

    name: str
    tokens: torch.Tensor
    flipped: torch.Tensor | None
    labels: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> TokenGroup:
        flipped = self.flipped[idx] if self.flipped is not None else None
        return TokenGroup(self.name, self.tokens[idx], flipped, self.labels[idx], self.names)


def cache_key(digest: str, dataset_digest: str, identities: list[str]) -> str:
    h = hashlib.sha256(json.dumps([digest, dataset_digest, sorted(identities)]).encode()).hexdigest()
    return h[:16]


@torch.no_grad()
def extract(ext: Extractor, images: torch.Tensor, batch_size: int = 64, flip: bool = False,
            device: torch.device | str = "cpu", log=None, label: str = "") -> torch.Tensor:
    """Raw ExtNet tokens of uint8 images (their mirrors with ``flip``), in batches."""
    ext = ext.to(device).eval()
    out, start = [], time.time()
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device)
        out.append(ext(x.flip(-1) if flip else x).float().cpu())
        if log is not None and (i // batch_size) % 10 == 9:
            log(f"  {label}{' (mirrored)' if flip else ''}: {i + len(x)}/{len(images)} images, "
                f"{time.time() - start:.0f}s")
    if not out:
        n, d = ext.token_shape
        return torch.empty(0, n, d)
    return torch.cat(out)


def group_path(root: Path, key: str, group: str, mirrors: bool = False) -> Path:
    return Path(root) / key / f"{group}{'-mirrors' if mirrors else ''}.safetensors"


def load_tokens(data: str | Path, split, group: str, ext: Extractor, root: str | Path = DEFAULT_ROOT,
                mirrors: bool = False, device: torch.device | str = "cpu", log=print) -> TokenGroup:
    """The group's raw ExtNet tokens (and mirrors'): from the owner's cache file, or extracted now and cached."""
    from veil.pipeline import load_group

    if group not in split.groups:
        raise VeilError(f"split has no group {group!r} (groups: {', '.join(split.groups)})")
    digest = extnet_digest(ext)
    key = f"{digest}-{cache_key(digest, split.dataset_digest, split.groups[group])}"
    path = group_path(Path(root), key, group, mirrors)
    if path.exists():
        meta = read_safetensors_metadata(path)
        if meta.get("format") == FORMAT and meta.get("extnet_digest") == digest and \
                meta.get("dataset_digest") == split.dataset_digest:
            state = load_file(str(path))
            return TokenGroup(group, state["tokens"], state.get("flipped"), state["labels"],
                              json.loads(meta["names"]))
        log(f"{path}: stale or foreign token cache, extracting again")
    faces = load_group(data, split, group, ext.cfg.img_size)
    start = time.time()
    tokens = extract(ext, faces.images, device=device, log=log, label=group)
    flipped = extract(ext, faces.images, flip=True, device=device, log=log, label=group) if mirrors else None
    log(f"{group}: {len(faces)} images{' x 2' if mirrors else ''} through ExtNet in {time.time() - start:.0f}s "
        f"-> {path}")
    state = {"tokens": tokens.contiguous(), "labels": faces.labels.long().contiguous()}
    if flipped is not None:
        state["flipped"] = flipped.contiguous()
    meta = {"format": FORMAT, "group": group, "extnet_digest": digest, "dataset_digest": split.dataset_digest,
            "names": json.dumps(faces.names), "seconds": f"{time.time() - start:.1f}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, st_save(state, metadata=meta))
    return TokenGroup(group, tokens, flipped, faces.labels.long(), faces.names)


def adopt(tokens: torch.Tensor, labels: torch.Tensor, data: str | Path, split, group: str, ext: Extractor,
          root: str | Path = DEFAULT_ROOT, check: int = 4, atol: float = 1e-4, log=print) -> TokenGroup:
    """Cache another owner-side extraction of the same group (e.g. another benchmark's), after checking it.

    ``check`` images spread over the group are run through ``ext`` again and must match to ``atol``;
    the labels must match exactly. Saves re-running ExtNet over a group already extracted on this machine.
    """
    from veil.pipeline import load_group

    faces = load_group(data, split, group, ext.cfg.img_size)
    if len(tokens) != len(faces) or not torch.equal(labels.long(), faces.labels.long()):
        raise VeilError(f"{group}: {len(tokens)} adopted rows/labels do not match the split's {len(faces)} images")
    idx = torch.linspace(0, len(faces) - 1, check).long()
    diff = float((extract(ext, faces.images[idx]) - tokens[idx].float()).abs().max())
    if diff > atol:
        raise VeilError(f"{group}: adopted tokens differ from ExtNet's by {diff:.2e} (> {atol})")
    digest = extnet_digest(ext)
    path = group_path(Path(root), f"{digest}-{cache_key(digest, split.dataset_digest, split.groups[group])}", group)
    meta = {"format": FORMAT, "group": group, "extnet_digest": digest, "dataset_digest": split.dataset_digest,
            "names": json.dumps(faces.names), "adopted_max_abs_diff": f"{diff:.3g}"}
    state = {"tokens": tokens.float().contiguous(), "labels": faces.labels.long().contiguous()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, st_save(state, metadata=meta))
    log(f"{group}: adopted {len(tokens)} cached rows (checked {check} images, max diff {diff:.1e}) -> {path}")
    return TokenGroup(group, state["tokens"], None, state["labels"], faces.names)
