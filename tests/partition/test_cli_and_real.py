"""CLI: bad input -> one line and exit 2; happy paths on a saved checkpoint; one attack on real LFW faces."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from veil.cli.app import app

from .conftest import LFW, needs_lfw

runner = CliRunner()


def _one_error_line(result) -> str:  # noqa: ANN001
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_missing_weights(tmp_path: Path) -> None:
    line = _one_error_line(runner.invoke(app, ["partition", "run", "--weights", str(tmp_path / "w.safetensors"),
                                               "--split", "3"]))
    assert "weights file not found" in line


def test_bad_split_index(resnet_weights: Path, synthetic_folder: Path) -> None:
    line = _one_error_line(runner.invoke(app, ["partition", "run", "--weights", str(resnet_weights), "--split",
                                               "99", "--data", str(synthetic_folder)]))
    assert "split index 99 out of range" in line


def test_bad_bound_and_model(resnet_weights: Path, synthetic_folder: Path) -> None:
    _one_error_line(runner.invoke(app, ["partition", "plan", "--weights", str(resnet_weights), "--max-ssim", "2"]))
    line = _one_error_line(runner.invoke(app, ["partition", "splits", "--model", "alexnet"]))
    assert "unknown model" in line


def test_corrupt_csv(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,time,x,label\n25-Apr-19,1:00:00,1\n")
    line = _one_error_line(runner.invoke(app, ["partition", "tabular", "--csv", str(bad)]))
    assert "bad.csv:2" in line


def test_run_in_process_matches_unsplit(resnet_weights: Path, synthetic_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = runner.invoke(app, ["partition", "run", "--weights", str(resnet_weights), "--split", "layer4",
                                 "--data", str(synthetic_folder), "--images", "4", "--backend", "in-process",
                                 "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "identical to float tolerance" in result.output and "MODELLED" in result.output
    assert out.is_file()


@needs_lfw
def test_reconstruction_attack_on_real_faces() -> None:
    """Real LFW images: the regression decoder on a shallow split beats the adversary's mean-face baseline (PSNR)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio as psnr

    from veil.partition import partition, reconstruction_attack
    from veil.partition.data import load_image_data
    from veil.partition.models import ModelSpec, build_model, preprocess

    data = load_image_data(LFW, 32, need_train=False)
    assert not set(data.victim.names) & set(data.aux.names)  # adversary's people are not the victim's
    spec = ModelSpec("resnet50", 10)
    torch.manual_seed(0)
    parts = partition(build_model(spec), "stem")
    aux, victim = data.aux.images[:160], data.victim.images[:24]
    with torch.no_grad():
        exposed = parts.enclave(preprocess(victim, spec))
    res = reconstruction_attack(parts.enclave, aux, exposed, victim, lambda x: preprocess(x, spec),
                                kind="regression", epochs=3)
    mean_face = (aux.float() / 255).mean(0, keepdim=True).expand(len(victim), -1, -1, -1)
    baseline = psnr(mean_face, victim.float() / 255, data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert res.n == 24 and res.samples.shape[1:] == (3, 32, 32)
    assert float(res.psnr.mean()) > float(baseline.mean()) + 1.0, (res.psnr.mean(), baseline.mean())
    assert 0 < float(res.ssim.mean()) < 1
