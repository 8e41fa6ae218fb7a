"""Split inference equals the unsplit model; the sequence helper works on VGG-16, ResNet-50 and EfficientNet-B0."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from veil.errors import VeilError
from veil.partition import candidate_splits, partition, to_sequence
from veil.partition.models import ModelSpec, build_model, load_model, preprocess
from veil.partition.sequence import resolve_split

ARCHS = ["vgg16", "resnet50", "efficientnet_b0"]
SEQ_ARCHS = [*ARCHS, "vgg16_bn"]


@pytest.mark.parametrize("arch", ARCHS)
def test_sequence_reproduces_torchvision_model(arch: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    seq = to_sequence(model, x)  # raises if the chain differs from model(x)
    with torch.no_grad():
        assert torch.allclose(seq(x), model(x), atol=1e-5)
    points = candidate_splits(seq)
    assert len(points) >= 5
    assert [p.index for p in points] == sorted({p.index for p in points})


@pytest.mark.parametrize("arch", SEQ_ARCHS)
def test_every_candidate_split_equals_unsplit(arch: str) -> None:
    torch.manual_seed(1)
    model = build_model(ModelSpec(arch, 5, image_size=32))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        seq = to_sequence(model)
        for p in candidate_splits(seq):
            parts = partition(seq, p.index)
            exposed = parts.enclave(x)
            assert exposed.ndim == 4, "a candidate split must expose a spatial map"
            assert torch.allclose(parts.accelerator(exposed), want, atol=1e-5), p


def test_expected_resnet_and_vgg_boundaries() -> None:
    seq = to_sequence(build_model(ModelSpec("resnet50", 3)))
    assert [p.label for p in candidate_splits(seq)] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert len(candidate_splits(seq, "block")) == 1 + 3 + 4 + 6 + 3
    vgg = to_sequence(build_model(ModelSpec("vgg16", 3)))
    assert [p.label for p in candidate_splits(vgg)] == [f"block{i}" for i in range(1, 6)]
    assert all(isinstance(vgg.units[p.index - 1], nn.MaxPool2d) for p in candidate_splits(vgg))


def test_non_chain_model_is_refused() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(x) + self.a(x)  # not a chain a -> b

    with pytest.raises(VeilError, match="not a plain chain"):
        to_sequence(Skip(), torch.randn(1, 3, 4, 4))


def test_bad_split_index_names_the_range() -> None:
    seq = to_sequence(build_model(ModelSpec("resnet50", 3)))
    with pytest.raises(VeilError, match="out of range"):
        resolve_split(seq, 99)
    with pytest.raises(VeilError, match="unknown split 'layer9'"):
        resolve_split(seq, "layer9")


def test_saved_checkpoint_round_trip_and_partial_loading(resnet_weights) -> None:
    from veil.partition.enclave import load_accelerator_part, load_enclave_part

    model, spec = load_model(resnet_weights)
    x = preprocess(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8), spec)
    head, _, point, _ = load_enclave_part(resnet_weights, "layer2")
    tail, _, _ = load_accelerator_part(resnet_weights, "layer2")
    enclave_keys = {n.split(".")[0] for n in head.prefixes()}
    assert not enclave_keys & {n.split(".")[0] for n in tail.prefixes()}, "the two halves share no weights"
    with torch.no_grad():
        assert torch.allclose(tail(head(x)), model(x), atol=1e-5)
    assert point.label == "layer2"


def test_missing_or_foreign_weights_file(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(VeilError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(VeilError, match="no Veil partition metadata"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(VeilError, match="cannot read"):
        load_model(tmp_path / "junk.safetensors")


def test_trained_checkpoint_round_trip(tmp_path) -> None:
    """Train (SYNTHETIC faces, one short epoch), save through Veil, load back: same outputs, metadata kept."""
    from safetensors import safe_open

    from veil.data.synthetic import synthetic_faces
    from veil.partition.models import read_spec, save_model
    from veil.partition.train import train_classifier

    faces = synthetic_faces(identities=4, per_identity=6, image_size=32, seed=0)
    res = train_classifier("efficientnet_b0", faces, faces, image_size=32, epochs=1, batch_size=8)
    path = save_model(res.model, res.spec, tmp_path / "e.safetensors", {"val_accuracy": res.val_accuracy.as_dict()})
    loaded, spec = load_model(path)
    assert spec == read_spec(path) and spec.classes == faces.names
    x = preprocess(faces.images[:4], spec)
    with torch.no_grad():
        assert torch.equal(loaded(x), res.model(x))
    with safe_open(str(path), framework="pt") as f:
        assert "val_accuracy" in f.metadata()["extra"]
