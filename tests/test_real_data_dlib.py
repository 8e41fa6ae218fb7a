"""The demo flow on REAL LFW faces with the default, pre-trained ExtNet (dlib's face ResNet), small sizes.

What must hold whatever the training noise: the run records which extractor it used (name, cut, weights
SHA-256, token shape), the strong features identify real persons far above chance, XNN keeps most of
Vanilla+PE's utility, the demo's cheap attacks are written where ``veil report`` finds them, and the
store the cloud sees holds no identity name.
"""

from __future__ import annotations

import json

from tests.conftest import LFW, needs_lfw
from veil.attacks.base import AttackResult
from veil.data.splits import SplitSpec
from veil.demo import Preset, run_xnn
from veil.models.dlib_resnet import DEFAULT_CUT
from veil.report.collect import collect
from veil.train.cloud import CloudTrainConfig

SMALL = Preset("small-dlib", split=SplitSpec(owner_test=40, owner_train=80, aux_a=5, aux_b=5),
               cloud=CloudTrainConfig(epochs=8, batch_size=64, dim=64, num_heads=2, depth=1, warmup_epochs=1))


@needs_lfw
def test_default_extnet_flow_on_real_faces(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    summary = run_xnn(LFW, run, SMALL, show_progress=False, log=lambda *_: None)
    ext = summary["extractor_info"]
    assert ext["name"] == f"dlib-resnet-cut{DEFAULT_CUT}" and ext["kind"] == "dlib-resnet" and ext["cut"] == 5
    assert ext["token_shape"] == [4, 256] and len(ext["weights_sha256"]) == 64
    u = summary["utility"]
    chance = u["XNN"]["chance"]
    assert chance == 1 / 40
    assert u["Vanilla+PE"]["rate"] > 10 * chance, u  # a trained-from-scratch toy gets ~3-4x chance here
    assert u["XNN"]["rate"] > 0.7 * u["Vanilla+PE"]["rate"], u
    # the demo's cheap attacks ran on this run and are where the report reads them
    kp = json.loads((run / "attacks" / "known_plaintext_xnn.json").read_text())
    assert [p["k"] for p in kp["points"]] == [0]  # key-free pooled cosine on the owner-keyed gallery
    assert all(p["n"] == u["XNN"]["n"] and p["chance"] == chance for p in kp["points"])
    lp = AttackResult.from_dict(json.loads((run / "attacks" / "leaked_pairs_xnn.json").read_text()))
    assert lp.attack == "leaked_pairs" and lp.details["gallery_kind"] == "clean"  # the clean gallery: the key matters
    envelope = [p for p in lp.details["curve"] if p["attack"].startswith("strongest")]
    assert [p["k"] for p in envelope] == [0, 4, 16, 64]
    assert envelope[0]["rate"] < kp["points"][0]["rate"]  # without pairs a clean gallery sees far less
    report = collect(run)
    assert {r.method for r in report.attacks} >= {"XNN", "Vanilla+PE"}
    (curve,) = [c for c in report.curves if c.source == "leaked_pairs_xnn.json"]
    assert [p.k for p in curve.points] == [0, 4, 16, 64]
    blob = b"".join(p.read_bytes() for p in (run / "store_xnn").iterdir())
    split = json.loads((run / "split.json").read_text())
    assert not [n for n in split["groups"]["owner_train"] if n.encode() in blob]
