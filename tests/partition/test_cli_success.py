"""The success paths of ``veil partition train | plan | tabular`` at the cheapest settings (SYNTHETIC folder,
a random SYNTHETIC ResNet-50, SYNTHETIC CSV rows): exit 0, the files they promise, and the printed figures
equal to the ones written."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from veil.cli.app import app
from veil.cli.common import console
from veil.partition.models import load_model

runner = CliRunner()


def _ok(args: list[str], monkeypatch) -> str:
    monkeypatch.setattr(console, "_width", 250)  # whole table rows
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_partition_train_writes_a_loadable_classifier(synthetic_folder: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "w.safetensors"
    text = _ok(["partition", "train", "--model", "resnet50", "--data", synthetic_folder, "--out", out,
                "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--min-class-images", "4"], monkeypatch)
    net, spec = load_model(out)
    assert spec.arch == "resnet50" and spec.image_size == 32 and len(spec.classes) >= 2
    assert f"over {len(spec.classes)} classes" in text and f"wrote {out}" in text and "held-out accuracy" in text
    assert net(__import__("torch").zeros(2, 3, 32, 32)).shape == (2, len(spec.classes))


def test_partition_plan_writes_plan_plot_and_grid(resnet_weights: Path, synthetic_folder: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    out = tmp_path / "plan"
    text = _ok(["partition", "plan", "--weights", resnet_weights, "--data", synthetic_folder, "--splits", "layer4",
                "--attacks", "regression", "--epochs", "1", "--victims", "4", "--aux", "32", "--max-ssim", "0.9",
                "--out", out], monkeypatch)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["model"] == "resnet50" and plan["max_ssim"] == 0.9 and plan["weights"] == str(resnet_weights)
    (split,) = plan["splits"]
    assert split["split"]["label"] == "layer4" and list(split["attacks"]) == ["regression"]
    assert split["safe"] == (split["worst_ssim_upper95"] <= 0.9)
    if split["safe"]:
        assert plan["choice"]["label"] == "layer4" and "split after layer4" in plan["recommendation"]
    else:
        assert plan["choice"] is None and "whole model in the enclave" in plan["recommendation"]
    assert "prior_baseline" in plan and plan["simulated"]
    assert (out / "plan.png").stat().st_size > 0 and (out / "reconstructions.png").stat().st_size > 0
    ssim = split["attacks"]["regression"]["ssim"]["mean"]
    row = next(line for line in text.splitlines() if "layer4" in line and ("yes" in line or "no" in line))
    assert f"{ssim:.3f}" in row, row
    assert plan["recommendation"] in " ".join(text.split()) and f"wrote {out / 'plan.json'}" in " ".join(text.split())


def test_partition_tabular_reports_each_split(tmp_path: Path, monkeypatch) -> None:
    rng = random.Random(0)
    lines = ["date,time,fridge_temperature,temp_condition,label,type"]
    for i in range(400):  # SYNTHETIC: attacks run hot
        attack = rng.random() < 0.4
        temp = rng.gauss(9.0 if attack else 3.0, 1.0)
        lines.append(f"25-Apr-19,{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{temp:.2f},"
                     f"{'high' if temp > 6 else 'low'},{int(attack)},{'ddos' if attack else 'normal'}")
    csv = tmp_path / "t.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "tab.json"
    text = _ok(["partition", "tabular", "--csv", csv, "--epochs", "2", "--attack-epochs", "2", "--out", out],
               monkeypatch)
    result = json.loads(out.read_text())
    assert result["classes"] == ["0", "1"] and result["label"] == "label"
    assert sum(result["rows"].values()) == 400 and result["features"][0] == "fridge_temperature"
    assert len(result["splits"]) >= 1
    for s in result["splits"]:
        assert s["max_abs_diff_vs_unsplit"] < 1e-5
        acc = s["detection_accuracy"]
        assert acc["n"] == result["rows"]["test"] and acc["ci95"][0] <= acc["rate"] <= acc["ci95"][1]
        assert set(s["reconstruction"]) == {"fridge_temperature", "temp_condition"}  # one-hot columns as one
        assert f"{100 * acc['rate']:.2f}% [{100 * acc['ci95'][0]:.2f}, {100 * acc['ci95'][1]:.2f}] n={acc['n']}" in text
    assert "400 rows, label 'label'" in text and f"wrote {out}" in " ".join(text.split())
