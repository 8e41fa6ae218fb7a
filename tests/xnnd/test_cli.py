"""`veil xnnd train` and `veil xnnd attack` on a SYNTHETIC identity folder, tiny sizes; errors are one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from veil.cli.xnnd import app
from veil.data.faceset import count_images
from veil.data.splits import SplitSpec, make_split
from veil.models.extractor import ExtractorConfig, build_backbone, save_backbone
from veil.models.recnet import load_recnet
from veil.xnnd.generator import load_generator


@pytest.fixture(scope="module")
def xnnd_ws(synthetic_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("xnnd_ws")
    split = make_split(count_images(synthetic_folder), SplitSpec(owner_test=8, owner_train=12, aux_a=5, aux_b=5))
    split.save(d / "split.json")
    torch.manual_seed(0)
    cfg = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)
    save_backbone(build_backbone(cfg), cfg, d / "ext.safetensors", {"synthetic": True})
    common = ["--data", str(synthetic_folder), "--split", str(d / "split.json")]
    r = CliRunner().invoke(app, ["train", *common, "--extractor", str(d / "ext.safetensors"), "--out", str(d / "run"),
                                 "--adv-epochs", "1", "--adv-batch", "16", "--teacher-epochs", "2",
                                 "--student-epochs", "2", "--eps", "0.5"])
    assert r.exit_code == 0, r.output
    return {"dir": d, "run": d / "run", "common": common}


def test_train_writes_secret_client_file_and_server_files(xnnd_ws):
    run = xnnd_ws["run"]
    assert stat.S_IMODE((run / "fg.safetensors").stat().st_mode) == 0o600
    fg, _ = load_generator(run / "fg.safetensors")
    server, info = load_recnet(run / "recnet_server.safetensors")
    assert fg.eps == 0.5 and info["xnnd"]["role"] == "server" and server.cfg.in_tokens == fg.token_shape[0]
    assert load_recnet(run / "recnet_baseline.safetensors")[1]["xnnd"]["role"] == "baseline"
    hist = json.loads((run / "xnnd_history.json").read_text())
    assert len(hist["stage1"]["adversary_ce"]) == 1 and len(hist["student"]["kl"]) == 2


def test_attack_reports_rates_with_chance(xnnd_ws, tmp_path):
    out = tmp_path / "a.json"
    r = CliRunner().invoke(app, ["attack", "--run", str(xnnd_ws["run"]), *xnnd_ws["common"], "--aux", "aux_b",
                                 "--epochs", "1", "--budgets", "8", "--json", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["utility"]["chance"] == pytest.approx(1 / 8)
    assert [p["images"] for p in res["black_box"]["curve"]][0] == 8
    assert res["black_box"]["n"] == res["utility"]["n"] > 0


def test_bad_arguments_are_one_line_errors(xnnd_ws):
    r = CliRunner().invoke(app, ["attack", "--run", str(xnnd_ws["run"]), *xnnd_ws["common"], "--aux", "owner_test"])
    assert r.exit_code == 2 and "aux_a or aux_b" in r.output
    r = CliRunner().invoke(app, ["train", *xnnd_ws["common"], "--extractor", str(xnnd_ws["dir"] / "nope"),
                                 "--out", str(xnnd_ws["dir"] / "x")])
    assert r.exit_code == 2 and "error" in r.output
