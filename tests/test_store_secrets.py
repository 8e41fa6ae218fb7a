"""README claims "the store holds no secret" and "every secret derives from the key": each checked so it can fail.

A store is made the way the owner makes one (ExtNet -> ObfNet(key) -> keyed label map -> StoreWriter) on
SYNTHETIC faces, then scanned for every key-derived parameter (``tests/secret_scan.py``). The scanner is
itself tested on stores with a secret planted in each place and form it claims to find, so a scan that
finds nothing means something.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.secret_scan import key_derived_patterns, store_problems
from veil.data.loaders import stream_faces
from veil.data.synthetic import synthetic_faces
from veil.keys import OwnerKey
from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.obfuscation.keyed import label_map, xnn_from_key
from veil.owner import obfuscate_to_store
from veil.store import open_store

CFG = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(identities=10, per_identity=3, image_size=32, seed=4)  # SYNTHETIC


@pytest.fixture(scope="module")
def ext():
    torch.manual_seed(0)
    return ExtNet(build_backbone(CFG), CFG).eval()


def make_store(ext, faces, key: OwnerKey, out: Path, kind: str = "orthogonal") -> Path:
    tokens, dim = ext.token_shape
    obfuscate_to_store(ext, xnn_from_key(key, tokens, dim, kind), stream_faces(faces, None, 32, 16), faces.names,
                       label_map(key, faces.names), out, synthetic=True, shard_size=24, show_progress=False)
    return out


@pytest.fixture(scope="module")
def keyed_store(ext, faces, tmp_path_factory):
    key = OwnerKey(bytes(range(1, 33)))
    return key, make_store(ext, faces, key, tmp_path_factory.mktemp("secrets") / "store")


def problems_of(store: Path, key: OwnerKey, ext, faces) -> list[str]:
    return store_problems(store, key, *ext.token_shape, faces.names)


def test_owner_store_holds_no_key_derived_parameter(keyed_store, ext, faces):
    key, store = keyed_store
    assert len(list(store.glob("shard-*.safetensors"))) > 1  # several shards, all scanned
    assert problems_of(store, key, ext, faces) == []
    manifest = open_store(store).manifest
    assert manifest["key_fingerprint"] == key.fingerprint and manifest["obfuscation"]["method"] == "xnn"


def test_gaussian_matrix_store_holds_no_key_derived_parameter(ext, faces, tmp_path):
    key = OwnerKey.generate()
    assert problems_of(make_store(ext, faces, key, tmp_path / "g", "gaussian"), key, ext, faces) == []


def _planted(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "planted"
    shutil.copytree(store, copy)
    return copy


@pytest.mark.parametrize("what", ["perm", "perm_inverse", "labels", "label_dict"])
def test_scan_finds_an_integer_secret_pasted_into_the_manifest(keyed_store, ext, faces, tmp_path, what):
    key, store = keyed_store
    bad = _planted(store, tmp_path)
    obf = xnn_from_key(key, *ext.token_shape)
    labels = label_map(key, faces.names)
    value = {"perm": obf.perm.tolist(), "perm_inverse": torch.argsort(obf.perm).tolist(),
             "labels": [labels[n] for n in sorted(labels)], "label_dict": labels}[what]
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["obfuscation"]["extra"] = value  # nested, indented JSON as StoreWriter writes it
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=1))
    found = problems_of(bad, key, ext, faces)
    assert any("key-derived secret" in p for p in found), found
    assert any("manifest.obfuscation: field 'extra'" in p for p in found), found


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("axis", ["row", "column"])
def test_scan_finds_one_matrix_row_or_column_saved_in_a_shard(keyed_store, ext, faces, tmp_path, dtype, kind, axis):
    key, store = keyed_store
    bad = _planted(store, tmp_path)
    m = xnn_from_key(key, *ext.token_shape, kind).matrix
    vector = m[5] if axis == "row" else m[:, 5]
    shard = sorted(bad.glob("shard-*.safetensors"))[-1]
    tensors = load_file(str(shard))
    tensors["extra"] = vector.to(dtype).contiguous()
    save_file(tensors, str(shard))
    found = problems_of(bad, key, ext, faces)
    assert f"key-derived secret found: M[{'5, :' if axis == 'row' else ':, 5'}] ({kind}) as {dtype}" in found, found
    assert any("tensors" in p for p in found), found


def test_scan_finds_the_matrix_and_seed_as_manifest_text(keyed_store, ext, faces, tmp_path):
    key, store = keyed_store
    bad = _planted(store, tmp_path)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["m"] = xnn_from_key(key, *ext.token_shape).matrix[:, 0].tolist()
    manifest["s"] = key.seed.hex()
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=1))
    found = problems_of(bad, key, ext, faces)
    assert "key-derived secret found: M[:, 0] (orthogonal) as JSON floats" in found, found
    assert "key-derived secret found: seed hex" in found
    assert "manifest: field 'm' is not on the allow-list" in found


def test_scan_finds_an_extra_file_and_shard_metadata(keyed_store, ext, faces, tmp_path):
    key, store = keyed_store
    bad = _planted(store, tmp_path)
    (bad / "notes.txt").write_text("hello")
    shard = sorted(bad.glob("shard-*.safetensors"))[0]
    save_file(load_file(str(shard)), str(shard), metadata={"k": "v"})
    found = problems_of(bad, key, ext, faces)
    assert "unexpected file notes.txt" in found and any("metadata" in p for p in found), found


def test_patterns_are_specific_to_the_key(ext, faces):
    """A clean store must not trip the scan for another key either: the patterns are the key's own."""
    a = key_derived_patterns(OwnerKey(bytes(32)), *ext.token_shape, faces.names)
    b = key_derived_patterns(OwnerKey(bytes(31) + b"\x01"), *ext.token_shape, faces.names)
    assert a.keys() == b.keys()
    shared = [name for name in a if a[name] == b[name]]
    assert shared == [], shared


# --- every secret depends on the key ------------------------------------------------------------------------------


NAMES = [f"person_{i:03d}" for i in range(40)]


def _one_bit_apart() -> tuple[OwnerKey, OwnerKey]:
    seed = bytearray(range(32))
    a = OwnerKey(bytes(seed))
    seed[31] ^= 1
    return a, OwnerKey(bytes(seed))


@pytest.mark.parametrize("pair", ["random", "one bit"])
def test_label_map_permutation_and_matrix_change_with_the_key(pair):
    a, b = (OwnerKey.generate(), OwnerKey.generate()) if pair == "random" else _one_bit_apart()
    la, lb = label_map(a, NAMES), label_map(b, NAMES)
    assert sorted(la.values()) == sorted(lb.values()) == list(range(len(NAMES)))  # one-to-one onto 0..n-1
    # 40 names: two keys agree on a label for about one name by chance; a key-independent map agrees on all
    assert sum(la[n] == lb[n] for n in NAMES) < 8, (la, lb)
    for kind in ("orthogonal", "gaussian"):
        xa, xb = xnn_from_key(a, 17, 64, kind), xnn_from_key(b, 17, 64, kind)
        assert (xa.perm != xb.perm).sum() >= 10, (xa.perm, xb.perm)
        assert (xa.matrix - xb.matrix).abs().max() > 0.1


def test_label_map_is_neither_name_order_nor_shared_across_keys():
    maps = [label_map(OwnerKey.generate(), NAMES) for _ in range(6)]
    for m in maps:
        assert [m[n] for n in NAMES] != list(range(len(NAMES)))  # not alphabetical order
    # each name gets several different labels over six keys
    spread = [len({m[n] for m in maps}) for n in NAMES]
    assert np.mean(spread) > 4, spread


def test_the_store_labels_change_with_the_key(ext, faces, tmp_path):
    a, b = _one_bit_apart()
    _, la = open_store(make_store(ext, faces, a, tmp_path / "a")).load_all()
    fa, _ = open_store(tmp_path / "a").load_all()
    fb, lb = open_store(make_store(ext, faces, b, tmp_path / "b")).load_all()
    assert la.shape == lb.shape and not torch.equal(la, lb)
    # the same rows are grouped the same way: only the names' labels moved
    assert len(set(zip(la.tolist(), lb.tolist(), strict=True))) == len(faces.names)
    assert not torch.allclose(fa.float(), fb.float(), atol=1e-2)
