"""Fixtures for the partition tests: tiny SYNTHETIC checkpoints saved by Veil itself, and the real data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import needs_data

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
LFW = SHARED / "lfw112"
TON = SHARED / "ton_iot"
needs_lfw = needs_data(LFW, "real LFW data")
needs_ton = needs_data(TON, "real TON_IoT data")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine is shared: one thread, and the CLI's configure_threads() respects OMP_NUM_THREADS."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ResNet-50 (10 classes, 32 px) saved through Veil's own writer (SYNTHETIC weights)."""
    from veil.partition.models import ModelSpec, build_model, save_model

    torch.manual_seed(0)
    spec = ModelSpec("resnet50", 10, image_size=32)
    model = build_model(spec)
    # non-trivial BN statistics, so a wrong buffer load would show up in the outputs
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_model(model, spec, tmp_path_factory.mktemp("w") / "resnet50.safetensors")
