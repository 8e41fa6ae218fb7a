"""bench/leaked_pairs.py writes Veil's one attack-result format, and `veil report` reads it.

The first two tests read the committed bench/results/leaked_pairs.json (REAL measurements on LFW); the
conversion test runs on a SYNTHETIC record of the earlier per-method shape (invented rates).
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

from veil.attacks.base import AttackResult
from veil.report.collect import bench_attack_results, collect

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "bench" / "results" / "leaked_pairs.json"


@pytest.fixture()
def bench_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    return importlib.import_module("leaked_pairs")


def test_committed_leaked_pairs_reads_back_through_the_one_attack_result_format(bench_module):
    payload = json.loads(COMMITTED.read_text())
    results = bench_attack_results(payload)
    assert len(results) == len(payload["methods"]) >= 6
    for raw, result in zip(payload["methods"], results, strict=True):
        assert result.attack == "leaked_pairs" and result.to_dict() == raw  # nothing lost or added on the way
        assert result.details["gallery_kind"] == "clean" and result.method in ("none", "xnn", "xnnh")
        strongest = [p for p in result.details["curve"] if p["attack"].startswith("strongest")]
        top = max(strongest, key=lambda p: p["k"])
        assert result.leakage is not None and (result.leakage.rate.hits, result.leakage.rate.n) == (top["hits"],
                                                                                                  top["n"])
        assert result.chance == pytest.approx(payload["figures"]["chance"])
        assert result.details["utility"]["n"] == payload["figures"]["probes"]
    # the markdown beside it is made from the file through from_dict: the committed one is what it reads
    assert (REPO / "bench" / "results" / "leaked_pairs.md").read_text() == bench_module.markdown(payload)


def test_report_reads_the_leaked_pairs_results(tmp_path: Path):
    run = tmp_path / "run"
    (run / "attacks").mkdir(parents=True)
    shutil.copy(COMMITTED, run / "attacks" / "leaked_pairs.json")
    data = collect(run)
    payload = json.loads(COMMITTED.read_text())
    rows = [r for r in data.attacks if r.source == "leaked_pairs.json"]
    assert len(rows) == len(payload["methods"])
    assert {r.method for r in rows} == {"Vanilla+PE", "XNN", "XNN-H"}
    assert all("clean gallery" in r.variant and r.utility is not None for r in rows)
    xnnh = [r for r in rows if r.method == "XNN-H"]
    assert len({r.variant for r in xnnh}) == len(xnnh)  # XNN-H's options tell its rows apart
    curves = [c for c in data.curves if c.source == "leaked_pairs.json"]
    assert len(curves) == len(rows) and all("leaked pairs" in c.title for c in curves)
    xnn = next(c for c in curves if c.method == "XNN")
    ks = [p.k for p in xnn.points]
    assert ks == sorted(ks) and ks[-1] == max(payload["figures"]["ks"])
    from veil.report.html import render

    html = render(data, "pytest")
    assert "Attacks over k leaked pairs" in html and xnn.title in html


def test_an_earlier_per_method_record_converts_with_the_same_figures(bench_module, tmp_path: Path):
    """SYNTHETIC rates in the shape the bench wrote before the attack-result format."""
    from veil.metrics import Rate

    point = {"chance": 0.1, "note": ""}
    curve = [{"k": 0, "attack": "identity", **point, **Rate(3, 10).as_dict()},
             {"k": 4, "attack": "ridge", **point, "hits": None, "n": None, "rate": None, "ci95": None},
             {"k": 16, "attack": "ridge", **point, "draws": [0.5, 0.7], **Rate(6, 10).as_dict()},
             {"k": 16, "attack": "strongest:ridge", **point, **Rate(6, 10).as_dict()}]
    old = {"name": "XNN", "method": "xnn", "options": {}, "public_info": {"method": "xnn"},
           "utility": {"hits": 8, "n": 10, "rate": 0.8, "ci95": [0.5, 0.9], "chance": 0.1}, "curve": curve,
           "attack_seconds": 12.0, "attack_config": {"ks": [0, 4, 16]}, "k_half": 16, "k_half_note": None,
           "k_half_by_estimator": {"identity": 0, "ridge": 16}, "utility_ratio": 0.9, "utility_ratio_ci95": [0.8, 1.0]}
    figures = {"gallery": 10, "ks": [0, 4, 16], "probes": 10, "chance": 0.1, "clean_leakage": 0.3,
               "half_clean_leakage": 0.15}
    envelope = {"benchmark": "leaked_pairs", "command": "python bench/leaked_pairs.py", "device": "cpu",
                "environment": {}, "seed": 0, "wall_seconds": 1.0, "figures": figures, "methods": [old]}
    (tmp_path / "old.json").write_text(json.dumps(envelope))
    bench_module.convert(tmp_path / "old.json", tmp_path / "out")
    new = json.loads((tmp_path / "out" / "leaked_pairs.json").read_text())
    (result,) = bench_attack_results(new)
    assert result.attack == "leaked_pairs" and result.method == "xnn" and result.leakage is not None
    assert (result.leakage.rate.hits, result.leakage.rate.n, result.leakage.gallery) == (6, 10, 10)
    assert result.leakage.hits is None  # a mean over two draws of the pairs has no single per-probe vector
    d = result.details
    assert [p for p in d["curve"] if not p["attack"].startswith("strongest")] == curve[:3]
    assert (d["seconds"], d["config"], d["k_half"], d["utility_ratio"]) == (12.0, {"ks": [0, 4, 16]}, 16, 0.9)
    assert d["utility"]["hits"] == 8 and d["utility"]["gallery"] == 10
    with pytest.raises(SystemExit, match="already"):
        bench_module.convert(tmp_path / "out" / "leaked_pairs.json", tmp_path / "again")


def test_a_one_draw_result_keeps_its_per_probe_hits(bench_module):
    import torch

    from veil.attacks.leakage import LeakageResult
    from veil.attacks.leaked_pairs import CurvePoint, LeakedPairsResult
    from veil.metrics import Rate

    hits = torch.tensor([True, False, True, True, False])
    curve = LeakedPairsResult([CurvePoint(4, "ridge", Rate(3, 5), 0.25, "", hits)], 1.0, {})
    util = LeakageResult(Rate(4, 5), 0.25, 4, torch.tensor([True, True, True, True, False]))
    record = bench_module.method_result("XNN", "xnn", {}, {}, util, curve, 4, "pytest").to_dict()
    back = AttackResult.from_dict(json.loads(json.dumps(record)))
    assert back.leakage is not None and torch.equal(back.leakage.hits, hits)
    assert torch.equal(LeakageResult.from_dict(back.details["utility"]).hits, util.hits)


@pytest.mark.parametrize("tag", ["aligned", "resized"])
def test_committed_invariants_read_back_and_report(tag: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """bench/invariants.py's committed results (REAL, LFW): every attack of every method through from_dict."""
    path = REPO / "bench" / "results" / f"invariants_{tag}.json"
    payload = json.loads(path.read_text())
    results = bench_attack_results(payload)
    names = [r.attack for r in results]
    assert names.count("inner_products") == len(payload["methods"]) and "token_spectrum" in names
    for r in results:
        assert r.leakage is not None and r.details["gallery_kind"] == "clean" and r.method is not None
        if r.attack == "inner_products":
            assert r.details["k_half"] in (None, *payload["figures"]["ks"]) and r.details["curve"]
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    invariants = importlib.import_module("invariants")
    assert path.with_suffix(".md").read_text() == invariants.markdown(payload)
    (tmp_path / "run" / "attacks").mkdir(parents=True)
    shutil.copy(path, tmp_path / "run" / "attacks" / path.name)
    data = collect(tmp_path / "run")
    assert len([a for a in data.attacks if a.source == path.name]) == len(results)
    assert not [m for m in data.missing if path.name in m]


def test_collate_reads_the_method_files_a_run_writes_old_and_new(bench_module, tmp_path: Path):
    """SYNTHETIC hits: the per-method files the bench writes (and one of the earlier shape) collate into
    attack results with utility ratios and k½, and their markdown renders."""
    import torch
    from safetensors.torch import save_file

    from veil.attacks.leakage import LeakageResult
    from veil.attacks.leaked_pairs import CurvePoint, LeakedPairsResult
    from veil.metrics import Rate

    labels = torch.arange(10) % 5
    methods = tmp_path / "methods"
    methods.mkdir()

    def write(name: str, method: str, util_hits: list[int], points: list[CurvePoint], old: bool = False) -> None:
        hits = torch.tensor(util_hits, dtype=torch.bool)
        save_file({"hits": hits.to(torch.uint8), "labels": labels},
                  str(methods / f"{bench_module.slugify(name)}.hits.safetensors"))
        util = LeakageResult(Rate(int(hits.sum()), 10), 0.2, 5, hits)
        record = bench_module.method_result(name, method, {}, {"method": method}, util,
                                            LeakedPairsResult(points, 3.0, {"ks": [0, 4]}), 5, "pytest").to_dict()
        if old:  # the earlier shape: no attack name, the utility as a bare rate, seconds/config renamed
            record = {"name": name, "method": method, "options": {}, "public_info": {"method": method},
                      "utility": {**util.rate.as_dict(), "chance": 0.2}, "curve": record["curve"],
                      "attack_seconds": 3.0, "attack_config": {"ks": [0, 4]}}
        (methods / f"{bench_module.slugify(name)}.json").write_text(json.dumps(record))

    probe = torch.tensor([True] * 8 + [False] * 2)
    write("Vanilla+PE", "none", [1] * 9 + [0], [CurvePoint(0, "identity", Rate(8, 10), 0.2, "", probe)])
    write("XNN", "xnn", [1] * 8 + [0] * 2, [CurvePoint(0, "identity", Rate(1, 10), 0.2, "", probe),
                                            CurvePoint(4, "ridge", Rate(5, 10), 0.2, "", probe)], old=True)
    collated, figures = bench_module.collate(methods, "Vanilla+PE;XNN", 0, 5)
    results = bench_attack_results({"methods": collated})
    assert [r.details["name"] for r in results] == ["Vanilla+PE", "XNN"] and figures["clean_leakage"] == 0.8
    xnn = results[1]
    assert xnn.attack == "leaked_pairs" and xnn.leakage is not None and xnn.leakage.rate == Rate(5, 10)
    assert (xnn.details["k_half"], xnn.details["utility_ratio"]) == (4, pytest.approx(8 / 9))
    assert results[0].leakage is not None and torch.equal(results[0].leakage.hits, probe)  # one draw: kept
    payload = {"command": "pytest", "figures": {**figures, "ks": [0, 4], "probes": 10, "gallery": 5, "chance": 0.2},
               "methods": collated}
    assert "| XNN | 80.0 [" in bench_module.markdown(payload)
