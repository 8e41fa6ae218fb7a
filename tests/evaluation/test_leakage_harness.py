"""The owner-side harness reads images as the run it attacks read them (``results.json``'s ``preprocess``).

SYNTHETIC images (the shared synthetic folder: no face a detector could find) and a tiny extractor.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from veil.data.loaders import load_faces
from veil.errors import VeilError
from veil.evaluation import leakage_harness
from veil.evaluation.leakage_harness import LeakageHarness
from veil.faces.config import ALIGNED_MARKER, DEFAULT_FACES, FaceConfig


def make_run(workspace: dict, root: Path, data: Path, preprocess: dict | None) -> Path:
    run = root / "run"
    run.mkdir()
    shutil.copy(workspace["split"], run / "split.json")
    shutil.copy(workspace["key"], run / "owner.key")
    results = {"data": str(data), "extractor": str(workspace["extractor"])}
    if preprocess is not None:
        results["preprocess"] = preprocess
    (run / "results.json").write_text(json.dumps(results))
    return run


@pytest.fixture()
def unmarked(workspace: dict, tmp_path: Path) -> Path:
    """The synthetic images in a folder that does not say it holds chips: the loaders would align it."""
    data = tmp_path / "data"
    shutil.copytree(workspace["data"], data)
    (data / ALIGNED_MARKER).unlink()
    return data


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    real = leakage_harness.load_group

    def spy(data, split, group, size, align=DEFAULT_FACES):
        calls.append((group, size, align))
        return real(data, split, group, size, None)  # SYNTHETIC: never run the detector on faceless images

    monkeypatch.setattr(leakage_harness, "load_group", spy)
    return calls


def test_a_run_made_with_align_none_is_attacked_on_the_same_unaligned_images(workspace, unmarked, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))
    resized = {"align": "none (whole image resized)"}
    run = make_run(workspace, tmp_path, unmarked, {"owner_train": resized, "owner_test": resized})
    h = LeakageHarness(run)
    faces = h.faces("owner_test")
    expected = load_faces(unmarked, h.ext.cfg.img_size, h.split.groups["owner_test"], None)
    assert len(faces) == len(expected) > 0 and torch.equal(faces.images, expected.images)
    assert h.face_settings("aux_a") == (None, h.ext.cfg.img_size)  # the adversary's images read alike


def test_recorded_face_settings_are_the_ones_used(workspace, tmp_path, captured):
    size = 32
    chosen = FaceConfig(detector="hog", on_no_face="whole-image", padding=0.3)
    record = {"align": chosen.describe(size), "images": 32, "without_face": 0}
    run = make_run(workspace, tmp_path, workspace["data"], {"owner_train": record, "owner_test": record})
    h = LeakageHarness(run)
    assert h.ext.cfg.img_size == size
    h.faces("owner_test")
    h.faces("aux_a")
    assert captured == [("owner_test", size, chosen), ("aux_a", size, chosen)]


def test_an_old_run_without_preprocess_warns_and_uses_the_default(workspace, tmp_path, captured):
    h = LeakageHarness(make_run(workspace, tmp_path, workspace["data"], None))
    with pytest.warns(UserWarning, match=r"records no face pipeline.*assuming the default \(hog alignment"):
        h.faces("owner_test")
    assert captured == [("owner_test", 32, DEFAULT_FACES)]


def test_a_chip_size_the_extractor_does_not_take_is_refused(workspace, tmp_path):
    record = {"align": FaceConfig().describe(150)}
    h = LeakageHarness(make_run(workspace, tmp_path, workspace["data"], {"owner_test": record}))
    with pytest.raises(VeilError, match="150 px face chips for owner_test, its extractor takes 32 px"):
        h.faces("owner_test")
