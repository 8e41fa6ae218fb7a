import numpy as np
import pytest
import torch

from tests.conftest import LFW, needs_lfw
from veil.data import SplitSpec, gallery_probe, load_npz, make_split
from veil.data.faceset import count_images
from veil.data.loaders import load_faces, load_image_folder, stream_faces
from veil.data.splits import Split
from veil.errors import VeilError


def test_image_folder_loads_identities(synthetic_folder):
    faces = load_image_folder(synthetic_folder, image_size=32)
    assert len(faces) == 160 and len(faces.names) == 40
    assert faces.images.dtype == torch.uint8 and faces.images.shape[1:] == (3, 32, 32)
    assert sorted(faces.counts().values()) == [4] * 40


def test_corrupt_image_names_the_file(synthetic_folder, tmp_path):
    bad = tmp_path / "data" / "someone"
    bad.mkdir(parents=True)
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(VeilError, match="broken.jpg"):
        load_image_folder(tmp_path / "data", image_size=32)


def test_npz_loader(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "f.npz", images=images, labels=np.array([5, 5, 7, 7, 9, 9]), names=np.array(
        ["n0", "n1", "n2", "n3", "n4", "n5", "a", "b", "c", "d"]))
    faces = load_npz(tmp_path / "f.npz")
    assert faces.names == ["n5", "b", "d"] and faces.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(faces.images[0].permute(1, 2, 0), torch.from_numpy(images[0]))
    with pytest.raises(VeilError, match="need 'images' and 'labels'"):
        np.savez(tmp_path / "g.npz", x=images)
        load_npz(tmp_path / "g.npz")


def test_split_is_disjoint_seeded_and_saved(tmp_path, synthetic_folder):
    counts = count_images(synthetic_folder)
    spec = SplitSpec(owner_test=8, owner_train=12, aux_a=5, aux_b=5, seed=3)
    a, b = make_split(counts, spec), make_split(counts, spec)
    assert a.groups == b.groups
    every = [n for g in a.groups.values() for n in g]
    assert len(every) == len(set(every)) == 40
    a.save(tmp_path / "s.json")
    assert Split.load(tmp_path / "s.json").groups == a.groups
    assert make_split(counts, SplitSpec(owner_test=8, owner_train=12, aux_a=5, aux_b=5, seed=4)).groups != a.groups


def test_split_refuses_impossible_sizes(synthetic_folder):
    with pytest.raises(VeilError, match="split needs"):
        make_split(count_images(synthetic_folder), SplitSpec(owner_test=100))


def test_gallery_probe_protocol(synthetic_folder):
    faces = load_faces(synthetic_folder, 32)
    gallery, probe = gallery_probe(faces, seed=0)
    assert len(gallery) == 40 and len(probe) == 120
    assert set(gallery.tolist()).isdisjoint(probe.tolist())
    assert sorted(faces.labels[gallery].tolist()) == list(range(40))


def test_streaming_matches_in_memory(synthetic_folder):
    names = sorted(count_images(synthetic_folder))[:5]
    whole = load_faces(synthetic_folder, 32, names)
    parts = list(stream_faces(synthetic_folder, names, 32, batch_size=7))
    assert torch.equal(torch.cat([p[0] for p in parts]), whole.images)
    assert torch.equal(torch.cat([p[1] for p in parts]), whole.labels)


@needs_lfw
def test_lfw_default_split_meets_the_protocol():
    counts = count_images(LFW)
    assert len(counts) == 4634
    split = make_split(counts, SplitSpec())
    assert len(split.groups["owner_test"]) >= 200  # chance at most 0.5%
    assert all(counts[n] >= 2 for n in split.groups["owner_test"] + split.groups["owner_train"])
    faces = load_faces(LFW, 64, split.groups["owner_test"][:10])
    assert faces.images.shape[1:] == (3, 64, 64) and not faces.synthetic
