"""``veil bench table2``: configuration checks, the markdown table, and a tiny real-data run (slow)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import LFW, needs_lfw
from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.cli.app import app
from veil.errors import VeilError
from veil.evaluation.table2 import Table2Config, markdown, run_table2
from veil.models.extractor import load_extnet
from veil.presets import PRESETS


def _rate(hits: int, n: int) -> dict:
    return {"hits": hits, "n": n, "rate": hits / n, "ci95": [0.0, 1.0]}


def test_unknown_method_or_preset_is_refused():
    with pytest.raises(VeilError, match="unknown method"):
        Table2Config(methods=("Vanilla+PE", "DP-SGD"))
    with pytest.raises(VeilError, match="unknown preset"):
        Table2Config(preset="huge")


def test_markdown_shows_every_rate_with_its_interval_and_the_ratio():
    payload = {"rows": [{"method": "Vanilla+PE", "utility": _rate(20, 100), "chance": 0.01,
                         "leakage": {"aux_a": _rate(19, 100), "aux_b": _rate(18, 100)}},
                        {"method": "XNN", "utility": _rate(19, 100), "chance": 0.01,
                         "leakage": {"aux_a": _rate(1, 100), "aux_b": _rate(2, 100)},
                         "utility_ratio_vs_vanilla": {"ratio": 0.95, "ci95": [0.8, 1.1]}}],
               "ablations": [{"name": "XNN, frozen pre-trained RecNet", "pretrained_extnet": True, "obfnet": True,
                              "frozen_recnet": True, "utility": _rate(5, 100)}]}
    md = markdown(payload)
    assert ("| XNN | 19.00 [0.00, 100.00] (100) | 1.00 [0.00, 100.00] | 2.00 [0.00, 100.00] | 1.00 "
            "| 95.0% [80.0, 110.0] |") in md
    assert "| XNN, frozen pre-trained RecNet | yes | yes | yes | 5.00 [0.00, 100.00] (100) |" in md


def test_cli_missing_dataset_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["bench", "table2", "--data", str(tmp_path / "nope"), "--out",
                                      str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    assert "dataset not found" in result.output


@pytest.mark.slow
@needs_lfw
def test_tiny_real_run_writes_every_row(tmp_path):
    cfg = Table2Config(preset="demo", owner_epochs=1, attack=AttackRecNetConfig(epochs=1), public_pool=100,
                       ih_encodings=1, ablations=False)
    payload = run_table2(LFW, tmp_path, cfg, show_progress=False, log=lambda _: None)
    assert [r["method"] for r in payload["rows"]] == ["Vanilla+PE", "IH(k=2)", "IH(k=3)", "NC", "XNN"]
    saved = json.loads((tmp_path / "table2.json").read_text())
    for row in saved["rows"]:
        assert row["utility"]["n"] == row["leakage"]["aux_a"]["n"] > 100
        assert set(row["leakage"]) == {"aux_a", "aux_b"}
    tokens, dim = load_extnet(PRESETS["demo"].extractor_name).token_shape   # cut 5 on aligned chips: 4 x 256
    assert saved["rows"][-1]["token_shape"] == [tokens + 1, dim] and saved["rows"][3]["token_shape"] == [16, 256]


def test_neuracrypt_patch_tiles_the_extractors_image_size():
    from veil.evaluation.table2 import nc_patch_for

    assert nc_patch_for(64, 16) == 16 and nc_patch_for(150, 16) == 15 and nc_patch_for(32, 16) == 16
    assert all(150 % nc_patch_for(150, p) == 0 for p in range(1, 40))
