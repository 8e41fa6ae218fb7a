"""The common bench envelope (veil.bench, bench/_common.py): fields, writer, and the library benchmarks' figures.

Every payload here is SYNTHETIC (invented rates); only the shapes are checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from veil.bench import ENVELOPE_FIELDS, Envelope, write_result

REPO = Path(__file__).resolve().parents[1]
# bench results whose command has not been re-run since the envelope (their JSON keeps the old shape until then)
NOT_YET_REGENERATED: set[str] = set()  # every committed result now carries the envelope


def test_finish_carries_every_field_the_versions_and_the_extras():
    env = Envelope("demo-bench", seed=3, device="cpu", command="python bench/x.py", versions={"tool": "1.0"})
    payload = env.finish({"figure": 1}, headline=0.5)
    assert list(payload)[:len(ENVELOPE_FIELDS)] == list(ENVELOPE_FIELDS)
    assert payload["figures"] == {"figure": 1} and payload["headline"] == 0.5 and payload["seed"] == 3
    assert payload["environment"]["tool"] == "1.0" and payload["environment"]["device"] == "cpu"
    assert payload["wall_seconds"] >= 0 and payload["command"] == "python bench/x.py"
    with pytest.raises(ValueError, match="seed"):
        env.finish({}, seed=4)


def test_write_result_refuses_a_payload_without_the_envelope(tmp_path):
    with pytest.raises(ValueError, match="figures"):
        write_result(tmp_path / "r.json", {"benchmark": "x"})
    path = write_result(tmp_path / "r.json", Envelope("x", command="c").finish([1, 2]))
    assert json.loads(path.read_text())["figures"] == [1, 2]


def test_bench_common_publishes_json_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    sys.modules.pop("_common", None)
    import _common

    assert _common.Envelope is Envelope  # one envelope for scripts and library
    out = _common.publish(tmp_path / "b.json", Envelope("b", command="c").finish({"n": 1}), "| a |\n")
    assert json.loads(out.read_text())["figures"] == {"n": 1}
    assert (tmp_path / "b.md").read_text() == "| a |\n" and "| a |" in capsys.readouterr().out
    assert _common.pct({"rate": 0.5, "ci95": [0.25, 0.75]}) == "50.00% [25.00, 75.00]"


def _rate(hits: int, n: int) -> dict:
    return {"hits": hits, "n": n, "rate": hits / n, "ci95": [0.0, 1.0]}


def test_table2_figures_are_the_headline_per_method_and_ablation():
    from veil.evaluation.table2 import headline

    rows = [{"method": "XNN", "utility": _rate(19, 100), "leakage": {"aux_a": _rate(1, 100)}, "chance": 0.01,
             "utility_ratio_vs_vanilla": {"ratio": 0.95}, "seconds": 3.0, "training_rows": 10}]
    abl = [{"name": "XNN, frozen", "utility": _rate(5, 100), "obfnet": True}]
    fig = headline(rows, abl)
    assert fig["methods"]["XNN"] == {"utility": _rate(19, 100), "leakage": {"aux_a": _rate(1, 100)},
                                     "chance": 0.01, "utility_ratio_vs_vanilla": {"ratio": 0.95}}
    assert fig["ablations"] == {"XNN, frozen": _rate(5, 100)}


def test_table4_merge_recomputes_the_figures():
    from veil.xnnd.table4 import headline, merge

    r = {"rate": 0.3, "ci95": [0.3, 0.3], "n": 10, "hits": 3}

    def measured(eps, adv, util):
        return {"eps": eps, "adversary": adv, "utility": {"rate": util, "hits": int(10 * util), "n": 10},
                "black_box": r, "transfer": r, "expectation": r, "known_plaintext": r, "chance": 0.1,
                "strongest_attack": {"attack": "black_box", **r}}

    cfg = {"eps": (1.0,), "adversaries": ("weak",), "extra": ()}
    piece = {"config": cfg, "baseline": measured(0.0, "none", 0.6), "settings": [measured(1.0, "weak", 0.55)],
             "verdict": {"setting": {}}, "files": {}, "command": "a"}
    out = merge([piece], "merged")
    assert out["figures"] == headline(out) and out["figures"]["curve"] == out["curve"]


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "bench" / "results").glob("*.json")
                                         if p.stem not in NOT_YET_REGENERATED), ids=lambda p: p.stem)
def test_committed_bench_results_carry_the_envelope(path):
    payload = json.loads(path.read_text())
    assert [f for f in ENVELOPE_FIELDS if f not in payload] == [], path.name
    # the file is the script's name, or a variant of it written with --out (partition_dlib by bench/partition.py)
    assert path.stem == payload["benchmark"] or path.stem.startswith(payload["benchmark"] + "_"), path.name
