"""An ``.npz`` dataset goes through the face pipeline like a folder (issue 21: ``.npz`` data were not aligned).

The REAL test packs a few LFW crops into an ``.npz`` and requires the same chips as the folder path; the
SYNTHETIC ones check the policy (no face -> skipped and listed) and the two ways to take arrays as given.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import LFW, needs_lfw
from veil.data.faceset import load_npz
from veil.data.loaders import load_faces, load_image_folder
from veil.data.synthetic import synthetic_faces
from veil.faces.config import DEFAULT_FACES
from veil.faces.image import decode_rgb, read_bytes

PERSONS = ("Aaron_Peirsol", "Abdullah_Gul")


@needs_lfw
def test_an_npz_of_real_crops_is_aligned_like_the_same_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "crops"
    files, labels = [], []
    for label, person in enumerate(PERSONS):
        (folder / person).mkdir(parents=True)
        for f in sorted((LFW / person).iterdir())[:3]:
            shutil.copy(f, folder / person / f.name)
            files.append(folder / person / f.name)
            labels.append(label)
    images = np.stack([decode_rgb(read_bytes(f), f) for f in files])
    np.savez(tmp_path / "crops.npz", images=images, labels=np.array(labels), names=np.array(PERSONS))
    from_npz = load_faces(tmp_path / "crops.npz", 150, list(PERSONS))
    from_folder = load_image_folder(folder, 150, list(PERSONS))
    assert from_npz.images.shape == from_folder.images.shape == (6, 3, 150, 150)
    assert (from_npz.images.int() - from_folder.images.int()).abs().max() <= 2
    assert torch.equal(from_npz.labels, from_folder.labels) and from_npz.names == from_folder.names
    assert from_npz.preprocess["align"]["detector"] == "hog" and from_npz.preprocess["faces_found"] == 6
    resized = load_npz(tmp_path / "crops.npz", 150)  # what an .npz gave before: the 112 px crop stretched
    assert (from_npz.images.float() - resized.images.float()).abs().mean() > 10


def write_synthetic(path: Path, **extra: np.ndarray) -> None:
    faces = synthetic_faces(identities=3, per_identity=2, image_size=32, seed=0)
    np.savez(path, images=faces.images.numpy(), labels=faces.labels.numpy(), **extra)


def test_an_npz_without_faces_is_skipped_and_listed(tmp_path: Path):
    """SYNTHETIC arrays hold no face: under the default skip policy every image is counted and left out."""
    write_synthetic(tmp_path / "s.npz")
    faces = load_faces(tmp_path / "s.npz", 32, align=DEFAULT_FACES)
    assert len(faces) == 0 and faces.names == ["id0", "id1", "id2"]
    assert faces.preprocess["without_face"] == 6 and faces.preprocess["skipped"][:2] == ["#0", "#1"]


def test_an_npz_of_chips_or_align_none_is_used_as_given(tmp_path: Path):
    """SYNTHETIC: an ``aligned`` entry (the folder marker's counterpart) or ``align=None`` skips alignment."""
    write_synthetic(tmp_path / "chips.npz", aligned=np.array(True))
    given = load_npz(tmp_path / "chips.npz", 32)
    marked = load_faces(tmp_path / "chips.npz", 32)
    assert torch.equal(marked.images, given.images) and "aligned chips" in marked.preprocess["align"]
    write_synthetic(tmp_path / "plain.npz")
    plain = load_faces(tmp_path / "plain.npz", 32, align=None)
    assert torch.equal(plain.images, given.images) and plain.preprocess["align"].startswith("none")
