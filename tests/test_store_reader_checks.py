"""The store reader's checks one at a time, each at its boundary and with its whole message: the manifest (counts,
shard entries, file names that could leave the store) and each shard (shapes, dtypes, label range). A store comes
from another party, so every check is a claim. Written for the store.py mutation survivors (bench/mutation.py);
SYNTHETIC tensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from veil.errors import VeilError
from veil.store import StoreWriter, _sha256, open_store

TOKENS, DIM, CLASSES = 3, 4, 5


def write(out: Path, n: int = 6, labels: torch.Tensor | None = None, num_classes: int = CLASSES) -> Path:
    g = torch.Generator().manual_seed(0)
    writer = StoreWriter(out, {"num_classes": num_classes, "synthetic": True}, shard_size=n)
    writer.add(torch.randn(n, TOKENS, DIM, generator=g), torch.arange(n) % num_classes if labels is None else labels)
    writer.close()
    return out


def manifest_of(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def set_manifest(store: Path, manifest: dict) -> Path:
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store / "manifest.json"


def refused(store: Path, message: str) -> None:
    with pytest.raises(VeilError) as info:
        open_store(store)
    assert str(info.value) == message


def replace_shard(store: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` as the store's one shard, with a manifest that lists its true rows and SHA-256."""
    shard = store / "shard-00000.safetensors"
    save_file(tensors, str(shard))
    manifest = manifest_of(store)
    rows = len(tensors["labels"]) if "labels" in tensors else manifest["rows"]
    manifest["shards"][0].update(rows=rows, sha256=_sha256(shard))
    manifest["rows"] = rows
    set_manifest(store, manifest)
    return shard


def shard_refused(store: Path, message: str) -> None:
    with pytest.raises(VeilError) as info:
        open_store(store).load_all()
    assert str(info.value) == message


# --- the manifest ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["tokens", "dim", "num_classes"])
@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_shape_fields_must_be_positive_integers(tmp_path: Path, field: str, bad) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest[field] = bad
    path = set_manifest(store, manifest)
    refused(store, f"{path}: {field!r} must be a positive integer, got {bad!r}")


def test_one_is_a_positive_integer(tmp_path: Path) -> None:
    store = write(tmp_path / "s", num_classes=1, labels=torch.zeros(6, dtype=torch.long))
    assert open_store(store).num_classes == 1
    manifest = manifest_of(store)
    manifest.update(tokens=1, dim=1)
    set_manifest(store, manifest)
    assert open_store(store).token_shape == (1, 1)


@pytest.mark.parametrize("rows, shards", [(-1, []), (True, []), ("0", []), (None, []), (0, {}), (0, "x")])
def test_rows_must_be_a_count_and_shards_a_list(tmp_path: Path, rows, shards) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest.update(rows=rows, shards=shards)
    path = set_manifest(store, manifest)
    refused(store, f"{path}: 'rows' must be a count and 'shards' a list")


def test_an_empty_store_manifest_is_well_formed(tmp_path: Path) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest.update(rows=0, shards=[])
    set_manifest(store, manifest)
    assert open_store(store).manifest["rows"] == 0


def test_a_shard_of_zero_rows_is_a_count(tmp_path: Path) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest["shards"].append({"file": "empty.safetensors", "rows": 0, "sha256": "0" * 64})
    set_manifest(store, manifest)
    assert len(open_store(store).manifest["shards"]) == 2


GOOD = {"file": "shard-00000.safetensors", "rows": 6, "sha256": "ab" * 32}


@pytest.mark.parametrize("entry", [
    ["shard-00000.safetensors", 6, "ab"], "shard-00000.safetensors", None,
    {k: v for k, v in GOOD.items() if k != "file"}, {**GOOD, "file": 3},
    {k: v for k, v in GOOD.items() if k != "rows"}, {**GOOD, "rows": -1}, {**GOOD, "rows": "6"}, {**GOOD, "rows": True},
    {k: v for k, v in GOOD.items() if k != "sha256"}, {**GOOD, "sha256": None},
    {**GOOD, "file": ""}, {**GOOD, "file": "."}, {**GOOD, "file": ".."}, {**GOOD, "file": "../shard"},
    {**GOOD, "file": "/etc/passwd"}, {**GOOD, "file": "sub/shard"}, {**GOOD, "file": "..\\shard"},
    {**GOOD, "file": "shard\\x"}, {**GOOD, "file": "shard\0.safetensors"},
], ids=["list", "str", "none", "no-file", "file-int", "no-rows", "rows-negative", "rows-str", "rows-bool",
        "no-sha", "sha-none", "empty", "dot", "dotdot", "parent", "absolute", "subdir", "backslash-parent",
        "backslash", "nul"])
def test_each_shard_entry_check_alone(tmp_path: Path, entry) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest["shards"] = [GOOD, entry] if isinstance(entry, dict) and entry.get("rows") == 6 else [entry]
    manifest["rows"] = 12 if len(manifest["shards"]) == 2 else 6
    path = set_manifest(store, manifest)
    index = len(manifest["shards"]) - 1
    refused(store, f"{path}: shard entry {index} must be {{file: a name in the store, rows, sha256}}")


@pytest.mark.parametrize("name", ["x", "..x", "x..", ".hidden", "shard.safetensors"])
def test_plain_names_are_accepted(tmp_path: Path, name: str) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest["shards"] = [{**GOOD, "file": name}]
    set_manifest(store, manifest)
    assert open_store(store).manifest["shards"][0]["file"] == name


def test_rows_must_add_up(tmp_path: Path) -> None:
    store = write(tmp_path / "s")
    manifest = manifest_of(store)
    manifest["rows"] = 7
    path = set_manifest(store, manifest)
    refused(store, f"{path}: the shards' rows do not add up to 'rows'")


def test_invalid_json_names_the_decoder_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    refused(tmp_path, f"{tmp_path / 'manifest.json'} is not valid JSON (Expecting property name enclosed in double "
                      "quotes: line 1 column 2 (char 1))")
    (tmp_path / "manifest.json").write_bytes(b"\xff{}")
    refused(tmp_path, f"{tmp_path / 'manifest.json'} is not valid JSON ('utf-8' codec can't decode byte 0xff in "
                      "position 0: invalid start byte)")


# --- each shard -----------------------------------------------------------------------------------------------
def test_a_changed_shard_names_the_checksum(tmp_path: Path) -> None:
    store = write(tmp_path / "s")
    shard = store / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\1")
    shard_refused(store, f"store shard {shard} is corrupt or truncated (SHA-256 does not match the manifest)")


@pytest.mark.parametrize("features, labels", [
    (torch.zeros(6, TOKENS * DIM), torch.zeros(6, dtype=torch.long)),  # features 2-D, labels fine
    (torch.zeros(6, TOKENS, DIM), torch.zeros(6, 1, dtype=torch.long)),  # labels 2-D, features fine
], ids=["features-2d", "labels-2d"])
def test_each_rank_check_alone(tmp_path: Path, features: torch.Tensor, labels: torch.Tensor) -> None:
    store = write(tmp_path / "s")
    shard = replace_shard(store, {"features": features, "labels": labels})
    shard_refused(store, f"store shard {shard} does not hold the 6 rows its manifest lists")


@pytest.mark.parametrize("features, labels", [
    (torch.zeros(6, TOKENS, DIM, dtype=torch.int32), torch.zeros(6, dtype=torch.long)),  # integer features alone
    (torch.zeros(6, TOKENS, DIM), torch.zeros(6, dtype=torch.int32)),  # int32 labels alone
], ids=["int-features", "int32-labels"])
def test_each_dtype_check_alone(tmp_path: Path, features: torch.Tensor, labels: torch.Tensor) -> None:
    store = write(tmp_path / "s")
    shard = replace_shard(store, {"features": features, "labels": labels})
    shard_refused(store, f"store shard {shard}: features must be floating point and labels int64")


@pytest.mark.parametrize("bad", [-1, CLASSES, CLASSES + 3])
def test_each_label_bound_alone(tmp_path: Path, bad: int) -> None:
    labels = torch.arange(6) % CLASSES
    labels[2] = bad
    store = write(tmp_path / "s", labels=labels)
    shard_refused(store, f"store shard {store / 'shard-00000.safetensors'} has labels outside 0..{CLASSES - 1}")


def test_the_largest_label_is_accepted(tmp_path: Path) -> None:
    labels = torch.full((6,), CLASSES - 1)
    labels[0] = 0
    store = write(tmp_path / "s", labels=labels)
    assert torch.equal(open_store(store).load_all()[1], labels)


# --- replacing a store ----------------------------------------------------------------------------------------
def test_a_replaced_store_that_cannot_be_deleted_does_not_fail_the_replacement(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path / "s", n=6)
    writer = StoreWriter(target, {"num_classes": CLASSES}, overwrite=True)
    writer.add(torch.ones(2, TOKENS, DIM), torch.tensor([1, 2]))

    def refuse(*args, **kwargs):
        raise PermissionError("the old store's files cannot be removed")

    monkeypatch.setattr(os, "unlink", refuse)  # only the old store's deletion unlinks anything in close()
    writer.close()
    monkeypatch.undo()
    feats, labels = open_store(target).load_all()
    assert labels.tolist() == [1, 2] and torch.equal(feats, torch.ones(2, TOKENS, DIM, dtype=torch.float16))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.old-")]
    assert len(leftovers) == 1  # the old store stays aside, beside the new one, for the owner to remove
