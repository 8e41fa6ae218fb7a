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


def test_bench_table4_sweep_end_to_end_tiny(xnnd_ws, synthetic_folder, tmp_path):
    """`veil bench table4 --sweep` on SYNTHETIC faces: curve rows, verdict, service files, the owner's token cache."""
    from veil.cli.bench import app as bench_app

    d = xnnd_ws["dir"]
    args = ["table4", "--data", str(synthetic_folder), "--split", str(d / "split.json"), "--run", str(tmp_path / "run"),
            "--extractor", str(d / "ext.safetensors"), "--tokens", str(tmp_path / "tokens"), "--sweep",
            "--eps-list", "0.5,4", "--adversaries", "weak", "--extra", "4/strong", "--stage1-epochs", "1",
            "--teacher-epochs", "1", "--student-epochs", "1", "--attack-epochs", "1", "--budgets", "4",
            "--ks", "2,8", "--results", str(tmp_path / "out" / "table4.json"), "--quiet"]
    r = CliRunner().invoke(bench_app, args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "table4.json").read_text())
    assert [(c["eps"], c["adversary"]) for c in res["curve"]] == [(0.5, "weak"), (4.0, "weak"), (4.0, "strong")]
    keys = {"eps", "adversary", "utility", "asr_black_box", "asr_transfer", "asr_expectation", "asr_known_plaintext"}
    assert all(keys <= set(c) for c in res["curve"])
    assert {"met", "setting", "asr_bound", "utility_bound"} <= set(res["verdict"])
    kp = res["baseline"]["known_plaintext"]["curve"]
    assert kp[0]["k"] == 2 and kp[0]["rate"] is None and not kp[0]["determined"]  # too few pairs: no figure
    for m in [res["baseline"], *res["settings"]]:
        for a in ("utility", "black_box", "transfer", "expectation"):
            assert {"n", "ci95", "chance"} <= set(m[a])
    assert (tmp_path / "out" / "table4.md").is_file() and (tmp_path / "out" / "table4.png").is_file()
    assert stat.S_IMODE((tmp_path / "run" / "fg.safetensors").stat().st_mode) == 0o600
    assert load_generator(tmp_path / "run" / "fg.safetensors")[0].token_level
    cached = list((tmp_path / "tokens").rglob("*.safetensors"))
    assert len(cached) == 3 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in cached)
    from veil.report.html import build_report

    page = build_report(tmp_path / "run", tsne=False).read_text()  # `veil report RUN` shows the curve
    assert 'id="xnnd-curve-plot"' in page and "Verdict:" in page


def test_bench_table4_rejects_an_unknown_adversary_in_one_line(tmp_path):
    from veil.cli.bench import app as bench_app

    for bad in (["--adversary", "nope"], ["--extra", "1/nope"]):
        r = CliRunner().invoke(bench_app, ["table4", "--run", str(tmp_path), *bad])
        assert r.exit_code != 0 and "adversary" in r.output.lower() and "Traceback" not in r.output
