"""The store on its own: what the writer produces, and every read error named (SYNTHETIC tensors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from veil.errors import VeilError
from veil.store import StoreWriter, open_store

TOKENS, DIM = 5, 8


def rows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, TOKENS, DIM, generator=g), torch.arange(n) % 3


def write(out: Path, n: int = 10, shard_size: int = 4, **kw) -> Path:
    writer = StoreWriter(out, {"num_classes": 3, "synthetic": True}, shard_size=shard_size, **kw)
    feats, labels = rows(n)
    writer.add(feats[:3], labels[:3])
    writer.add(feats[3:], labels[3:])
    writer.close()
    return out


def test_writer_shards_rows_in_order_and_the_manifest_lists_them(tmp_path):
    store = open_store(write(tmp_path / "s"))
    m = store.manifest
    assert [s["rows"] for s in m["shards"]] == [4, 4, 2] and m["rows"] == 10
    assert [s["file"] for s in m["shards"]] == [f"shard-0000{i}.safetensors" for i in range(3)]
    assert (m["format"], m["version"], m["tokens"], m["dim"], m["dtype"]) == ("veil-store", 1, TOKENS, DIM, "float16")
    assert store.token_shape == (TOKENS, DIM) and store.num_classes == 3
    feats, labels = store.load_all()
    want_f, want_l = rows(10)
    assert torch.equal(labels, want_l) and feats.dtype == torch.float16
    assert torch.equal(feats, want_f.half())
    assert not (tmp_path / "s" / "manifest.json.tmp").exists()


def test_writer_dtype_and_exact_shard_multiple(tmp_path):
    store = open_store(write(tmp_path / "s", n=8, shard_size=4, dtype=torch.float32))
    assert store.manifest["dtype"] == "float32" and [s["rows"] for s in store.manifest["shards"]] == [4, 4]
    assert torch.equal(store.load_all()[0], rows(8)[0])


def test_writer_refuses_bad_rows(tmp_path):
    writer = StoreWriter(tmp_path / "s", {"num_classes": 3})
    with pytest.raises(VeilError, match=r"\(n, tokens, dim\) with n labels, got \(4, 8\) and 4 labels"):
        writer.add(torch.zeros(4, 8), torch.zeros(4))
    with pytest.raises(VeilError, match="and 3 labels"):
        writer.add(torch.zeros(4, TOKENS, DIM), torch.zeros(3))
    writer.add(torch.zeros(2, TOKENS, DIM), torch.zeros(2))
    with pytest.raises(VeilError, match=r"feature shape changed inside a store: \(5, 8\) then \(5, 9\)"):
        writer.add(torch.zeros(2, TOKENS, DIM + 1), torch.zeros(2))
    with pytest.raises(VeilError, match="no rows were written"):
        StoreWriter(tmp_path / "empty", {"num_classes": 3}).close()


def test_writer_refuses_to_overwrite_unless_told(tmp_path):
    write(tmp_path / "s")
    with pytest.raises(VeilError, match="refusing to overwrite a store"):
        StoreWriter(tmp_path / "s", {"num_classes": 3})
    write(tmp_path / "s", n=4, overwrite=True)
    assert open_store(tmp_path / "s").manifest["rows"] == 4
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["manifest.json", "shard-00000.safetensors"]
    (tmp_path / "empty").mkdir()
    StoreWriter(tmp_path / "empty", {"num_classes": 3})  # an existing empty folder is fine


def edit_manifest(store: Path, change) -> None:
    m = json.loads((store / "manifest.json").read_text())
    change(m)
    (store / "manifest.json").write_text(json.dumps(m))


def test_missing_shard_is_named(tmp_path):
    store = write(tmp_path / "s")
    (store / "shard-00001.safetensors").unlink()
    with pytest.raises(VeilError, match="store shard missing: .*shard-00001.safetensors"):
        open_store(store).load_all()


def test_changed_shard_fails_its_checksum_unless_unverified(tmp_path):
    store = write(tmp_path / "s")
    path = store / "shard-00000.safetensors"
    tensors = load_file(str(path))
    tensors["features"][0, 0, 0] += 1
    save_file(tensors, str(path))
    with pytest.raises(VeilError, match="shard-00000.safetensors is corrupt or truncated"):
        open_store(store).load_all()
    assert len(list(open_store(store).shards(verify=False))) == 3


def test_unreadable_shard_is_named(tmp_path):
    store = write(tmp_path / "s")
    path = store / "shard-00002.safetensors"
    path.write_bytes(b"garbage")
    edit_manifest(store, lambda m: m["shards"][2].update(sha256=__import__("hashlib").sha256(b"garbage").hexdigest()))
    with pytest.raises(VeilError, match="cannot read store shard .*shard-00002"):
        open_store(store).load_all()


@pytest.mark.parametrize("what", ["rows", "labels", "features"])
def test_wrong_row_count_is_named(tmp_path, what):
    store = write(tmp_path / "s")
    if what == "rows":
        edit_manifest(store, lambda m: (m["shards"][1].update(rows=5), m.update(rows=11)))
    else:
        path = store / "shard-00001.safetensors"
        tensors = load_file(str(path))
        tensors[what] = tensors[what][:3]
        save_file(tensors, str(path))
        edit_manifest(store, lambda m: m["shards"][1].update(sha256=__import__("veil.store", fromlist=["x"])._sha256(
            path)))
    with pytest.raises(VeilError, match=r"shard-00001.safetensors does not hold the (5|4) rows its manifest lists"):
        open_store(store).load_all()


def test_missing_tensor_and_wrong_feature_shape_are_named(tmp_path):
    from veil.store import _sha256

    store = write(tmp_path / "s")
    path = store / "shard-00000.safetensors"
    save_file({"features": load_file(str(path))["features"]}, str(path))
    edit_manifest(store, lambda m: m["shards"][0].update(sha256=_sha256(path)))
    with pytest.raises(VeilError, match="does not hold the 4 rows"):
        open_store(store).load_all()
    edit_manifest(write(tmp_path / "t"), lambda m: m.update(dim=DIM + 1))
    with pytest.raises(VeilError, match=r"has features \(5, 8\), manifest says \(5, 9\)"):
        open_store(tmp_path / "t").load_all()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(version=0), "store version 0 is not supported"),
    (lambda m: m.update(format="other"), "is not a Veil store manifest"),
    (lambda m: m.pop("num_classes"), "lacks the field 'num_classes'"),
    (lambda m: m.pop("rows"), "lacks the field 'rows'"),
    (lambda m: m.pop("shards"), "lacks the field 'shards'"),
    (lambda m: m.pop("tokens"), "lacks the field 'tokens'"),
    (lambda m: m.pop("dim"), "lacks the field 'dim'"),
])
def test_old_or_foreign_manifest_is_refused(tmp_path, change, message):
    store = write(tmp_path / "s")
    edit_manifest(store, change)
    with pytest.raises(VeilError, match=message):
        open_store(store)


def test_no_manifest_or_broken_json(tmp_path):
    with pytest.raises(VeilError, match="missing manifest.json; was `veil obfuscate` interrupted"):
        open_store(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(VeilError, match="is not valid JSON"):
        open_store(tmp_path)
