"""The obfuscated dataset the owner sends to the cloud: safetensors shards plus a JSON manifest.

What is inside: obfuscated token features, anonymous integer labels, and public facts (shapes,
dtype, method name and public hyper-parameters, a one-way fingerprint of the owner's key and of
ExtNet, per-shard SHA-256). What is never inside: identity names, the key or any parameter derived
from it, raw images, file names. A test scans a store for each of these.

Writing streams shard by shard, so peak memory stays flat however large the dataset. A store is
written into a fresh hidden directory beside its destination, manifest last, and renamed into place
only when complete: a crash leaves no store that looks complete, an existing store is never
overwritten unless asked, and a failed ``--force`` run leaves the old store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from veil.errors import VeilError
from veil.io import write_json

STORE_FORMAT = "veil-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class StoreWriter:
    """Append (features, labels) batches; every ``shard_size`` rows become one safetensors shard."""

    def __init__(self, directory: str | Path, info: dict, shard_size: int = 4096,
                 dtype: torch.dtype = torch.float16, overwrite: bool = False) -> None:
        self.final = Path(directory)
        self.overwrite = overwrite
        self._refuse_existing()
        # Build beside the destination and swap in only at close(): a failed run (a corrupt image, a
        # crash, Ctrl-C) leaves an existing store byte for byte as it was (issue 12, finding 4).
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.new-", dir=self.final.parent))
        self.closed = False
        self.info = dict(info)
        self.shard_size = shard_size
        self.dtype = dtype
        self._feats: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._buffered = 0
        self._shards: list[dict] = []
        self._shape: tuple[int, int] | None = None
        self.count = 0

    def _refuse_existing(self) -> None:
        if self.final.exists() and (not self.final.is_dir() or any(self.final.iterdir())) and not self.overwrite:
            raise VeilError(f"{self.final} already exists and is not empty; refusing to overwrite a store "
                            "(pass --force to replace it)")

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        """Remove the half-built store; the destination (and any store already there) is untouched."""
        if not self.closed:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.closed = True

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.ndim != 3 or len(features) != len(labels):
            raise VeilError(f"store rows must be (n, tokens, dim) with n labels, got {tuple(features.shape)} "
                            f"and {len(labels)} labels")
        shape = tuple(features.shape[1:])
        if self._shape is None:
            self._shape = shape  # type: ignore[assignment]
        elif shape != self._shape:
            raise VeilError(f"feature shape changed inside a store: {self._shape} then {shape}")
        self._feats.append(features.detach().to("cpu", self.dtype))
        self._labels.append(labels.detach().to("cpu", torch.int64))
        self._buffered += len(features)
        while self._buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, rows: int) -> None:
        feats, labels = torch.cat(self._feats), torch.cat(self._labels)
        name = f"shard-{len(self._shards):05d}.safetensors"
        path = self.dir / name
        save_file({"features": feats[:rows].contiguous(), "labels": labels[:rows].contiguous()}, str(path))
        self._shards.append({"file": name, "rows": rows, "sha256": _sha256(path)})
        self.count += rows
        rest_f, rest_l = feats[rows:], labels[rows:]
        self._feats, self._labels = ([rest_f], [rest_l]) if len(rest_f) else ([], [])
        self._buffered = len(rest_f)

    def close(self) -> Path:
        """Write the last shard and the manifest, then move the finished store into place; returns the manifest path.

        The swap renames the old store aside, the new one into its place, and only then deletes the
        old one; a crash between the two renames leaves the old store in ``.NAME.old-*`` beside it.
        """
        if self.closed:
            raise VeilError("store writer already closed")
        if self._buffered:
            self._flush(self._buffered)
        if self._shape is None:
            self.abort()
            raise VeilError("no rows were written to the store")
        manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, **self.info,
                    "tokens": self._shape[0], "dim": self._shape[1], "dtype": str(self.dtype).split(".")[-1],
                    "rows": self.count, "shards": self._shards}
        write_json(self.dir / MANIFEST, manifest, indent=1)
        self._swap_in()
        return self.dir / MANIFEST

    def _swap_in(self) -> None:
        try:
            self._refuse_existing()  # a store may have appeared at the destination meanwhile
        except VeilError:
            self.abort()
            raise
        old: Path | None = None
        if self.final.is_dir() and any(self.final.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
            os.rename(self.final, old / "store")
        elif self.final.is_dir():
            self.final.rmdir()
        elif self.final.exists():
            raise VeilError(f"{self.final} exists and is not a directory")
        os.rename(self.dir, self.final)
        self.dir, self.closed = self.final, True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class Store:
    """A store opened for reading: its manifest, and tensors loaded on demand."""

    dir: Path
    manifest: dict

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def token_shape(self) -> tuple[int, int]:
        return int(self.manifest["tokens"]), int(self.manifest["dim"])

    def shards(self, verify: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for entry in self.manifest["shards"]:
            path = self.dir / entry["file"]
            if not path.is_file():
                raise VeilError(f"store shard missing: {path}")
            if verify and _sha256(path) != entry["sha256"]:
                raise VeilError(f"store shard {path} is corrupt or truncated (SHA-256 does not match the "
                                "manifest)")
            try:
                tensors = load_file(str(path))
            except Exception as exc:
                raise VeilError(f"cannot read store shard {path}: {exc}") from None
            feats, labels = tensors.get("features"), tensors.get("labels")
            if feats is None or labels is None or feats.ndim != 3 or labels.ndim != 1 \
                    or len(feats) != entry["rows"] or len(labels) != entry["rows"]:
                raise VeilError(f"store shard {path} does not hold the {entry['rows']} rows its manifest lists")
            if tuple(feats.shape[1:]) != self.token_shape:
                raise VeilError(f"store shard {path} has features {tuple(feats.shape[1:])}, manifest says "
                                f"{self.token_shape}")
            if not feats.is_floating_point() or labels.dtype != torch.int64:
                raise VeilError(f"store shard {path}: features must be floating point and labels int64")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise VeilError(f"store shard {path} has labels outside 0..{self.num_classes - 1}")
            yield feats, labels

    def load_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = list(self.shards())
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def open_store(directory: str | Path) -> Store:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise VeilError(f"no store at {directory} (missing {MANIFEST}; was `veil obfuscate` interrupted?)")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VeilError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise VeilError(f"{path} is not a Veil store manifest")
    if manifest.get("version") != STORE_VERSION:
        raise VeilError(f"{path}: store version {manifest.get('version')!r:.40} is not supported ({STORE_VERSION})")
    _check_manifest(path, manifest)
    return Store(directory, manifest)


def _is_count(value: object, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _check_manifest(path: Path, manifest: dict) -> None:
    """Every field the reader uses, with its type: the store comes from another party (issue 12 fuzzing)."""
    for field in ("tokens", "dim", "num_classes", "shards", "rows"):
        if field not in manifest:
            raise VeilError(f"{path} lacks the field {field!r}")
    for field in ("tokens", "dim", "num_classes"):
        if not _is_count(manifest[field], 1):
            raise VeilError(f"{path}: {field!r} must be a positive integer, got {manifest[field]!r:.40}")
    shards = manifest["shards"]
    if not _is_count(manifest["rows"]) or not isinstance(shards, list):
        raise VeilError(f"{path}: 'rows' must be a count and 'shards' a list")
    for i, entry in enumerate(shards):
        ok = (isinstance(entry, dict) and isinstance(entry.get("file"), str) and _is_count(entry.get("rows"))
              and isinstance(entry.get("sha256"), str))
        # a plain file name inside the store: never a path that leaves it
        if not ok or entry["file"] in ("", ".", "..") or "/" in entry["file"] or "\\" in entry["file"] \
                or "\0" in entry["file"]:
            raise VeilError(f"{path}: shard entry {i} must be {{file: a name in the store, rows, sha256}}")
    if sum(e["rows"] for e in shards) != manifest["rows"]:
        raise VeilError(f"{path}: the shards' rows do not add up to 'rows'")
