"""End to end on SYNTHETIC images: a tiny run directory, the owner-side harness, and ``veil attack``."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from veil.cli.app import app
from veil.data.splits import Split
from veil.errors import VeilError
from veil.evaluation.leakage_harness import LeakageHarness
from veil.keys import OwnerKey
from veil.pipeline import obfuscate
from veil.train.cloud import CloudTrainConfig, train_to_file


@pytest.fixture(scope="module")
def run_dir(workspace, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("attack_run")
    shutil.copy(workspace["split"], run / "split.json")
    shutil.copy(workspace["key"], run / "owner.key")
    split = Split.load(run / "split.json")
    for tag, key in (("xnn", OwnerKey.load(run / "owner.key")), ("vanilla", None)):
        stats = obfuscate(workspace["data"], split, workspace["extractor"], run / f"store_{tag}", key,
                          show_progress=False)
    tiny = CloudTrainConfig(epochs=1, batch_size=16, dim=32, depth=1, num_heads=2, emb_dim=16)
    train_to_file(run / "store_vanilla", run / "recnet_vanilla.safetensors", tiny, "cpu", show_progress=False)
    (run / "results.json").write_text(json.dumps({"data": str(workspace["data"]),
                                                  "extractor": str(workspace["extractor"]),
                                                  "preprocess": {"owner_train": stats["preprocess"]}}))
    return run


def test_vanilla_target_is_the_clean_tokens_and_xnn_target_is_not(run_dir):
    h = LeakageHarness(run_dir)
    clean, _ = h.clean_tokens("owner_test")
    assert torch.allclose(h.target("vanilla").features, clean.half().float())
    xnn = h.target("xnn")
    assert not torch.allclose(xnn.features, clean.half().float(), atol=1e-2)
    assert len(xnn.gallery) == len(h.split.groups["owner_test"])


def test_clean_gallery_holds_clean_tokens_and_obfuscated_probes(run_dir):
    h = LeakageHarness(run_dir)
    clean, _ = h.clean_tokens("owner_test")
    owner, mixed = h.target("xnn"), h.target("xnn", "clean")
    assert torch.equal(mixed.gallery, owner.gallery) and torch.equal(mixed.probe, owner.probe)
    assert torch.allclose(mixed.features[mixed.gallery], clean[mixed.gallery].half().float())
    assert torch.equal(mixed.features[mixed.probe], owner.features[owner.probe])
    with pytest.raises(VeilError, match="gallery"):
        h.target("xnn", "public")
    result = CliRunner().invoke(app, ["attack", "cloud-model", "--method", "vanilla", "--gallery", "clean",
                                      "--run", str(run_dir), "--device", "cpu"])
    assert result.exit_code == 0 and "clean gallery" in result.output, result.output


def test_known_plaintext_recovers_the_owner_key_from_real_pipeline_pairs(run_dir):
    h = LeakageHarness(run_dir)
    tokens, dim = h.ext.token_shape
    k = dim // tokens + 2  # enough rows to pin down M
    r = h.known_plaintext("xnn", ks=(0, k)).to_dict()
    assert r["points"][-1]["permutation_accuracy"] == 1.0
    assert r["points"][-1]["matrix_rel_error"] < 0.05  # float16 store rows, so not bit-exact


def test_cli_runs_each_attack_and_prints_chance(run_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "kp.json"
    for args in (["known-plaintext", "--k", "0,2", "--json", str(out)],
                 ["alignment", "--method", "vanilla", "--public", "public", "--max-public", "10"],
                 ["expectation", "--epochs", "1", "--aux", "aux_b"],
                 ["cloud-model", "--method", "vanilla"]):
        result = runner.invoke(app, ["attack", *args, "--run", str(run_dir), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        # a result row, not just the header: a rate, its interval, n probes (8 persons x 3) and chance (1 / 8)
        row = re.search(r"(\d+\.\d\d)%.*\[(\d+\.\d\d)%, (\d+\.\d\d)%\].*\b24\b.*12\.50%", result.output)
        assert row, result.output
        rate, lo, hi = map(float, row.groups())
        assert lo <= rate <= hi, result.output
    assert [p["k"] for p in json.loads(out.read_text())["points"]] == [0, 2]


def test_cli_bad_parameter_is_a_one_line_error(run_dir):
    result = CliRunner().invoke(app, ["attack", "alignment", "--run", str(run_dir), "--identifier", "svm"])
    assert result.exit_code == 2
    assert "identifier" in result.output and "Traceback" not in result.output


def test_not_a_run_directory_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["attack", "expectation", "--run", str(tmp_path)])
    assert result.exit_code == 2 and "split.json" in result.output


def test_any_registered_method_is_attacked_by_its_store(run_dir, workspace, tmp_path):
    """XNN-H is attacked like XNN: its store sits in the folder the registry names (store_xnnh)."""
    result = CliRunner().invoke(app, ["attack", "expectation", "--method", "xnnh", "--run", str(run_dir)])
    assert result.exit_code == 2 and "store_xnnh" in result.output and "--method xnnh" in result.output
    split = Split.load(run_dir / "split.json")
    obfuscate(workspace["data"], split, workspace["extractor"], run_dir / "store_xnnh",
              OwnerKey.load(run_dir / "owner.key"), show_progress=False, method="xnnh")
    out = tmp_path / "xnnh.json"
    result = CliRunner().invoke(app, ["attack", "expectation", "--method", "xnnh", "--epochs", "1", "--run",
                                      str(run_dir), "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert (written["attack"], written["method"], written["obfuscation"]) == ("expectation", "xnnh", "xnnh")
    assert written["n"] == 24 and written["chance"] == 0.125
