"""Folders of photos through the loaders and ``veil data align``: faces found in REAL-face scenes, images without
a face counted, listed and left out (or used whole), corrupt files named, aligned folders never aligned twice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import LFW, needs_lfw
from tests.faces.scenes import make_scene, texture
from veil.cli.app import app
from veil.data.loaders import load_image_folder, stream_faces
from veil.data.splits import gallery_probe
from veil.errors import VeilError
from veil.faces.bulk import AlignReport
from veil.faces.config import ALIGNED_MARKER, FaceConfig

pytestmark = needs_lfw


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A/ two scenes of one person, B/ a scene and a bare texture, C/ only a bare texture."""
    root = tmp_path_factory.mktemp("photos")
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[20:22]
    rng = np.random.default_rng(3)
    for name, person in zip("AB", people, strict=True):
        (root / name).mkdir()
        for i, crop in enumerate(sorted(person.iterdir())[:2 if name == "A" else 1]):
            make_scene([crop], rng).save(root / name / f"scene{i}.png")
    texture(rng).save(root / "B" / "bare.png")
    (root / "C").mkdir()
    texture(rng).save(root / "C" / "bare.jpg")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))


def test_loader_skips_and_lists_images_without_a_face(photos):
    faces = load_image_folder(photos, 150)
    assert faces.names == ["A", "B", "C"] and faces.labels.tolist() == [0, 0, 1]
    assert faces.files == ["A/scene0.png", "A/scene1.png", "B/scene0.png"]
    p = faces.preprocess
    assert (p["images"], p["faces_found"], p["without_face"]) == (5, 3, 2)
    assert p["skipped"] == ["B/bare.png", "C/bare.jpg"] and p["align"]["on_no_face"] == "skip"
    gallery, probe = gallery_probe(faces)  # the identity protocol still works: C has no image left
    assert len(gallery) == 2 and len(probe) == 1
    whole = load_image_folder(photos, 150, align=FaceConfig(on_no_face="whole-image"))
    assert len(whole) == 5 and whole.preprocess["whole_image"] == ["B/bare.png", "C/bare.jpg"]
    assert whole.preprocess["geometry_cached"] == 5  # the first load filled the owner's cache


def test_streaming_reports_the_same(photos):
    report = AlignReport()
    batches = list(stream_faces(photos, ["A", "B", "C"], 64, batch_size=2, report=report))
    assert sum(len(x) for x, _ in batches) == 3 and all(x.shape[1:] == (3, 64, 64) for x, _ in batches)
    assert report.images == 5 and sorted(report.no_face) == [str(photos / "B/bare.png"), str(photos / "C/bare.jpg")]


def test_corrupt_file_is_named(photos, tmp_path):
    bad = tmp_path / "bad"
    (bad / "A").mkdir(parents=True)
    (bad / "A" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(VeilError, match="cannot read image .*broken.jpg"):
        load_image_folder(bad, 150)
    r = CliRunner().invoke(app, ["data", "align", str(bad), "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2 and "broken.jpg" in r.output and "Traceback" not in r.output


def test_data_align_writes_chips_once_and_loaders_take_them_as_they_are(photos, tmp_path):
    out = tmp_path / "aligned"
    r = CliRunner().invoke(app, ["data", "align", str(photos), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "5 images, 2 without a face" in r.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["A/scene0.png", "A/scene1.png",
                                                                           "B/scene0.png"]
    record = json.loads((out / ALIGNED_MARKER).read_text())
    assert record["skipped"] == ["B/bare.png", "C/bare.jpg"] and record["align"]["chip_size"] == 150
    again = load_image_folder(out, 150)  # chips already: not aligned a second time
    assert again.preprocess["align"].startswith("none") and len(again) == 3
    direct = load_image_folder(photos, 150)
    assert np.array_equal(again.images.numpy(), direct.images.numpy())  # PNG is lossless: the same chips
    r = CliRunner().invoke(app, ["data", "align", str(photos), "--out", str(photos / "A"), "--quiet"])
    assert r.exit_code == 2 and "not empty" in r.output
