"""Shared fixtures: a small SYNTHETIC identity folder (unit tests only) and the real LFW path when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from veil.data.synthetic import synthetic_faces
from veil.faces.config import ALIGNED_MARKER

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw112"

def needs_data(path: Path, what: str) -> pytest.MarkDecorator:
    """Skip a test whose shared data is missing, unless ``VEIL_REQUIRE_DATA=1`` (CI sets it): then it fails.

    CI runs beside ``../shared``; a skip there would report green while the real-data tests never ran.
    """
    reason = f"{what} not found at {path}"
    if path.is_dir() or os.environ.get("VEIL_REQUIRE_DATA") != "1":
        return pytest.mark.skipif(not path.is_dir(), reason=reason)
    return pytest.mark.veil_required_missing(reason=f"VEIL_REQUIRE_DATA=1 but {reason}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "veil_required_missing(reason): data or a tool the run requires is missing")


def pytest_runtest_setup(item: pytest.Item) -> None:
    mark = item.get_closest_marker("veil_required_missing")
    if mark is not None:
        pytest.fail(mark.kwargs["reason"], pytrace=False)


needs_lfw = needs_data(LFW, "real LFW data")

TINY_EXTRACTOR = ["--img-size", "32", "--embed-dim", "64", "--heads", "2", "--depth", "2", "--ext-depth", "1",
                  "--stem-stages", "2"]


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic identities x 4 images, 32x32 PNG, one sub-folder per identity.

    SYNTHETIC images hold no face a detector could find: the folder carries the marker ``veil data align``
    writes, which tells the loaders its images are chips already (no alignment), as for any aligned folder.
    """
    root = tmp_path_factory.mktemp("synthetic_faces")
    (root / ALIGNED_MARKER).write_text('{"align": "SYNTHETIC chips, generated aligned"}')
    faces = synthetic_faces(identities=40, per_identity=4, image_size=32, seed=1)
    for i, (img, label) in enumerate(zip(faces.images, faces.labels, strict=True)):
        folder = root / faces.names[int(label)]
        folder.mkdir(exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{faces.names[int(label)]}_{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def workspace(synthetic_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A split, a key and a tiny pre-trained extractor over the synthetic folder, made through the CLI."""
    from typer.testing import CliRunner

    from veil.cli.app import app

    ws = tmp_path_factory.mktemp("ws")
    runner = CliRunner()
    steps = [
        ["data", "split", "--data", str(synthetic_folder), "--out", str(ws / "split.json"), "--owner-test", "8",
         "--owner-train", "12", "--aux", "5"],
        ["key", "new", "--out", str(ws / "owner.key")],
        ["extractor", "pretrain", "--split", str(ws / "split.json"), "--data", str(synthetic_folder),
         "--out", str(ws / "ext.safetensors"), "--epochs", "1", "--batch-size", "16", *TINY_EXTRACTOR],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return {"data": synthetic_folder, "split": ws / "split.json", "key": ws / "owner.key",
            "extractor": ws / "ext.safetensors", "dir": ws}
