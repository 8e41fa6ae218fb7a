"""The XNN flow as separate parties through the CLI, on SYNTHETIC data, plus every bad-input case."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import LFW, needs_lfw
from tests.faces.scenes import make_scene, texture
from tests.secret_scan import store_problems
from veil.cli.app import app
from veil.keys import OwnerKey
from veil.store import open_store

runner = CliRunner()
TRAIN = ["--epochs", "2", "--batch-size", "32", "--dim", "64", "--heads", "2", "--depth", "1"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def trained(workspace, tmp_path_factory):
    ws = dict(workspace)
    out = tmp_path_factory.mktemp("flow")
    invoke("obfuscate", "--split", ws["split"], "--extractor", ws["extractor"], "--key", ws["key"],
           "--data", ws["data"], "--out", out / "store")
    invoke("train", "--store", out / "store", "--out", out / "recnet.safetensors", *TRAIN)
    ws.update(store=out / "store", recnet=out / "recnet.safetensors", out=out)
    return ws


def test_store_holds_no_secret_and_no_name(trained):
    names = [n for g in json.loads(trained["split"].read_text())["groups"].values() for n in g]
    key = OwnerKey.load(trained["key"])
    manifest = open_store(trained["store"]).manifest
    # every key-derived parameter (P, M rows/columns, label map, seed), names, and fields off the allow-list
    owner_names = json.loads(trained["split"].read_text())["groups"]["owner_train"]
    assert store_problems(trained["store"], key, manifest["tokens"], manifest["dim"], owner_names) == []
    blob = b"".join(p.read_bytes() for p in trained["store"].iterdir())
    assert not [n for n in names if n.encode() in blob]
    assert set(manifest["obfuscation"]) == {"method", "matrix"}
    assert manifest["key_fingerprint"] == key.fingerprint
    assert all(f.suffix in {".safetensors", ".json"} for f in trained["store"].iterdir())
    # no raw image: features are (tokens x dim) floats, never (3 x H x W) bytes
    feats, labels = open_store(trained["store"]).load_all()
    assert feats.ndim == 3 and feats.shape[1:] != (3, 32, 32)
    assert labels.max() < manifest["num_classes"]


def test_evaluate_and_identify(trained):
    out = invoke("evaluate", "--split", trained["split"], "--extractor", trained["extractor"], "--recnet",
                 trained["recnet"], "--key", trained["key"], "--data", trained["data"])
    assert "top-1 identification" in out and "chance" in out
    person = next(p for p in sorted(trained["data"].iterdir()))
    image = sorted(person.iterdir())[0]
    out = invoke("identify", image, "--gallery", trained["data"], "--extractor", trained["extractor"], "--recnet",
                 trained["recnet"], "--key", trained["key"], "--align", "none")  # SYNTHETIC: no face to find
    assert image.name in out and person.name in out


def test_wrong_key_is_refused(trained, tmp_path):
    other = tmp_path / "other.key"
    invoke("key", "new", "--out", other)
    out = fails("evaluate", "--split", trained["split"], "--extractor", trained["extractor"], "--recnet",
                trained["recnet"], "--key", other, "--data", trained["data"])
    assert "wrong key" in out


def test_vanilla_recnet_refuses_a_key(trained, tmp_path):
    invoke("obfuscate", "--split", trained["split"], "--extractor", trained["extractor"], "--vanilla",
           "--data", trained["data"], "--out", tmp_path / "vstore")
    invoke("train", "--store", tmp_path / "vstore", "--out", tmp_path / "v.safetensors", *TRAIN)
    out = fails("evaluate", "--split", trained["split"], "--extractor", trained["extractor"], "--recnet",
                tmp_path / "v.safetensors", "--key", trained["key"], "--data", trained["data"])
    assert "none (vanilla)" in out and "wrong key" in out, out


def test_truncated_shard_is_named_and_nothing_is_lost(trained, tmp_path):
    bad = tmp_path / "store"
    shutil.copytree(trained["store"], bad)
    shard = sorted(bad.glob("shard-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    model_before = trained["recnet"].read_bytes()
    out = fails("train", "--store", bad, "--out", trained["recnet"], "--force", *TRAIN)
    assert shard.name in out and "truncated" in out
    assert trained["recnet"].read_bytes() == model_before  # the existing model file was not touched


def test_missing_manifest_and_existing_store(trained, tmp_path):
    assert "missing manifest.json" in fails("train", "--store", tmp_path, "--out", tmp_path / "r.safetensors")
    before = sorted(p.name for p in trained["store"].iterdir())
    out = fails("obfuscate", "--split", trained["split"], "--extractor", trained["extractor"], "--key",
                trained["key"], "--data", trained["data"], "--out", trained["store"])
    assert "refusing to overwrite" in out
    assert sorted(p.name for p in trained["store"].iterdir()) == before


def test_mismatched_shapes_are_refused(trained, tmp_path):
    other_ext = tmp_path / "ext.safetensors"
    invoke("extractor", "pretrain", "--split", trained["split"], "--data", trained["data"], "--out", other_ext,
           "--epochs", "1", "--batch-size", "16", "--img-size", "32", "--embed-dim", "32", "--heads", "2",
           "--depth", "1", "--ext-depth", "1", "--stem-stages", "1")
    out = fails("evaluate", "--split", trained["split"], "--extractor", other_ext, "--recnet", trained["recnet"],
                "--key", trained["key"], "--data", trained["data"])
    assert "ExtNet" in out


def test_corrupt_checkpoint_and_key(trained, tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    assert "not a readable safetensors" in fails(
        "evaluate", "--split", trained["split"], "--extractor", tmp_path / "bad.safetensors", "--recnet",
        trained["recnet"], "--key", trained["key"], "--data", trained["data"])
    (tmp_path / "bad.key").write_text("{}")
    (tmp_path / "bad.key").chmod(0o600)
    assert "not a valid Veil key" in fails("key", "show", tmp_path / "bad.key")


def test_key_new_prints_fingerprint_only(tmp_path):
    out = invoke("key", "new", "--out", tmp_path / "k.key")
    key = OwnerKey.load(tmp_path / "k.key")
    assert key.fingerprint in out and key.seed.hex() not in out


@needs_lfw
def test_identify_takes_scenes_and_says_when_there_is_no_face(trained, tmp_path):
    """REAL LFW faces in SYNTHETIC-textured scenes: the largest face by default, every face with --all-faces and
    its box, and a scene without a face is one line and exit 2 (the tiny SYNTHETIC model: names not checked)."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[10:12]
    crops = [sorted(p.iterdir())[0] for p in people]
    common = ["--gallery", trained["data"], "--extractor", trained["extractor"], "--recnet", trained["recnet"],
              "--key", trained["key"]]
    two = tmp_path / "two.png"
    make_scene(crops, np.random.default_rng(1), scales=(1.0, 1.0)).save(two)
    one_row = [ln for ln in invoke("identify", two, *common).splitlines() if "two.png" in ln]
    rows = [ln for ln in invoke("identify", two, *common, "--all-faces").splitlines() if "two.png" in ln]
    assert len(one_row) == 1 and len(rows) == 2
    boxes = [re.search(r"(\d+), (\d+), (\d+), (\d+)", ln) for ln in rows]
    assert all(boxes) and boxes[0].groups() != boxes[1].groups()  # type: ignore[union-attr]
    bare = tmp_path / "bare.png"
    texture(np.random.default_rng(2)).save(bare)
    out = fails("identify", bare, *common)
    assert "no face found in" in out and "bare.png" in out
