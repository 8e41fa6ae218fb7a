"""``veil demo`` itself, end to end on the SYNTHETIC folder with a tiny preset: exit code, the printed
result rows, ``results.json``'s fields and the attack files the report reads (the full-size run is the demo)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from veil.attacks.base import AttackResult
from veil.cli.app import app
from veil.cli.common import console
from veil.data.splits import SplitSpec
from veil.models.extractor import ExtractorConfig
from veil.presets import PRESETS, Preset
from veil.train.cloud import CloudTrainConfig
from veil.train.pretrain import PretrainConfig

TINY = Preset("tiny-cli", extractor_name="hybrid", split=SplitSpec(owner_test=8, owner_train=12, aux_a=5, aux_b=5),
              extractor=ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1),
              pretrain=PretrainConfig(epochs=1, batch_size=32),
              cloud=CloudTrainConfig(epochs=2, batch_size=16, dim=32, num_heads=2, depth=1, warmup_epochs=1))


def test_veil_demo_prints_rows_and_writes_results(synthetic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(PRESETS, "tiny-cli", TINY)
    monkeypatch.setattr(console, "_width", 220)  # whole rows, whatever the terminal
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["demo", "--data", str(synthetic_folder), "--out", str(out), "--preset",
                                      "tiny-cli", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["preset"] == "tiny-cli" and saved["data"] == str(synthetic_folder)
    assert saved["split"]["owner_test"] == 8 and saved["split"]["owner_train"] == 12
    assert saved["config"]["cloud"]["epochs"] == 2 and saved["extractor_info"]["kind"] is not None
    assert len(saved["key_fingerprint"]) >= 8 and (out / "owner.key").is_file()
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("│").split("│")]
                                          for line in result.output.splitlines() if line.count("│") == 7)}
    for name in ("Vanilla+PE", "XNN", "XNN, wrong key"):
        u = saved["utility"][name]
        assert u["gallery"] == 8 and u["chance"] == 1 / 8 and u["n"] > 0
        assert u["ci95"][0] <= u["rate"] <= u["ci95"][1] and u["hits"] == round(u["rate"] * u["n"])
        # the table prints this row with the saved numbers
        cells = rows.get(name)
        assert cells, f"no {name!r} row in:\n{result.output}"
        lo, hi = (f"{100 * v:.2f}" for v in u["ci95"])
        assert cells[1] == f"{100 * u['rate']:.2f}%" and cells[2] == f"[{lo}, {hi}]"
        assert cells[3:] == [str(u["n"]), "8", "12.50%"]
    r = saved["ratio_xnn_over_vanilla"]
    assert r["identities"] == 8 and r["ci95"][0] <= r["ratio"] <= r["ci95"][1]
    assert f"{100 * r['ratio']:.1f}%" in result.output
    # the cheap attacks ran and sit where `veil report` reads them
    for method in ("xnn", "vanilla"):  # the owner-keyed gallery: key-free pooled cosine, centred and uncentred
        for suffix, identifier in (("", "pooled"), ("_uncentred", "pooled-uncentred")):
            kp = json.loads((out / "attacks" / f"known_plaintext_{method}{suffix}.json").read_text())
            assert [p["k"] for p in kp["points"]] == [0] and kp["identifier"] == identifier
        assert [p["k"] for p in saved["attacks"][method]["points"]] == [0]
        assert [p["k"] for p in saved["attacks"][f"{method}, uncentred"]["points"]] == [0]
    # the clean gallery: leaked pairs at k = 0, 4, 16 (64 is more than this run's 48 training images)
    lp = AttackResult.from_dict(json.loads((out / "attacks" / "leaked_pairs_xnn.json").read_text()))
    assert [p["k"] for p in lp.details["curve"] if p["attack"].startswith("strongest")] == [0, 4, 16]
    assert lp.details["gallery_kind"] == "clean" and "points" not in lp.details  # one shape: the attack's curve
    assert [p["k"] for p in saved["attacks"]["xnn, clean gallery"]["points"]] == [0, 4, 16]
    assert "leaked pairs, clean gallery, k=16" in result.output
    assert "pooled cosine, owner-keyed gallery, k=0" in result.output
    assert "pooled cosine uncentred, owner-keyed gallery, k=0" in result.output
    assert f"veil report {out}" in result.output and str(out / "results.json") in result.output
    # the stores the cloud saw and both RecNets are there
    assert (out / "store_xnn" / "manifest.json").is_file() and (out / "recnet_xnn.safetensors").is_file()


def test_veil_demo_refuses_an_unknown_preset(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "run"), "--preset", "nope", "--quiet"])
    assert result.exit_code == 2 and "preset must be one of" in result.output
    assert not (tmp_path / "run").exists()
