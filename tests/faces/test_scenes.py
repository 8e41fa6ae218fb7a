"""Photos, not crops: real LFW faces placed in larger SYNTHETIC-textured scenes are found, aligned and identified
as from the crop itself; two faces give the largest (or both); a scene without a face is no face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import LFW, needs_lfw
from tests.faces.scenes import make_scene, texture
from veil.faces.config import FaceConfig
from veil.faces.pipeline import FacePipeline, NoFaceError

pytestmark = needs_lfw
PERSONS = 40


def persons_with_two_images(n: int) -> list[tuple]:
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)
    step = max(1, len(people) // (2 * n))
    return [tuple(sorted(p.iterdir())[:2]) for p in people[::step]]


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(FaceConfig())


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    """dlib's face ResNet whole (the port; weights converted into a temporary cache)."""
    from veil.models.dlib_resnet import load_whole, normalize_rgb

    net = load_whole(tmp_path_factory.mktemp("cache")).eval()

    @torch.no_grad()
    def run(chips: list[np.ndarray]) -> torch.Tensor:
        return net(normalize_rgb(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2)))

    return run


def test_identification_from_the_scene_equals_identification_from_the_crop(pipeline, embed, tmp_path):
    rng = np.random.default_rng(21)
    probes, gallery, scenes = [], [], []
    for probe, other in persons_with_two_images(PERSONS):
        try:  # the set: real faces whose crop the detector finds (in crop and gallery image)
            crop_chip = pipeline.align_file(probe, 150)[0].chip
            gallery_chip = pipeline.align_file(other, 150)[0].chip
        except NoFaceError:
            continue
        path = tmp_path / f"scene_{len(scenes)}.png"
        make_scene([probe], rng).save(path)
        probes.append(crop_chip)
        gallery.append(gallery_chip)
        scenes.append(path)
        if len(scenes) == PERSONS:
            break
    assert len(scenes) == PERSONS
    scene_chips = []
    for path in scenes:
        (found,) = pipeline.align_file(path, 150)  # the face is found in every scene (else NoFaceError)
        scene_chips.append(found.chip)
    g = embed(gallery)
    from_crop = torch.cdist(embed(probes), g).argmin(1)
    from_scene = torch.cdist(embed(scene_chips), g).argmin(1)
    agree = float((from_crop == from_scene).float().mean())
    assert agree >= 0.95, f"scene and crop agree on {agree:.1%} of {PERSONS} real faces"
    assert float((from_crop == torch.arange(PERSONS)).float().mean()) >= 0.8  # and they are mostly right


def test_two_faces_give_the_largest_or_both_and_a_bare_scene_none(pipeline, tmp_path):
    (a, _), (b, _) = persons_with_two_images(PERSONS)[2:4]
    rng = np.random.default_rng(5)
    path = tmp_path / "two.png"
    make_scene([a, b], rng, scales=(1.0, 1.0)).save(path)
    scene = np.asarray(make_scene([a, b], np.random.default_rng(5), scales=(1.0, 1.0)))
    geometry = pipeline.geometry(scene)
    assert len(geometry.faces) == 2 and geometry.faces[0].area >= geometry.faces[1].area
    assert len(pipeline.align_file(path, 150)) == 1
    both = pipeline.align_file(path, 150, all_faces=True)
    assert [f.face.box for f in both] == [f.box for f in geometry.faces]
    bare = tmp_path / "bare.png"
    texture(np.random.default_rng(9)).save(bare)
    with pytest.raises(NoFaceError, match="no face found in .*bare.png"):
        pipeline.align_file(bare, 150)
