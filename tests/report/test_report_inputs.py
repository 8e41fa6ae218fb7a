"""``veil report`` on what results.json and attacks/*.json may hold: the key-binding section, and attack
files that parse as JSON but are malformed (wrong type, points without k or rate, no rate). SYNTHETIC runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.report.synth_run import make_run, rate, results
from veil.errors import VeilError
from veil.report import build_report
from veil.report.collect import collect


def _run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run", with_table2=False, with_stores=False)


def test_key_binding_rows_are_collected_and_rendered(tmp_path: Path) -> None:
    run = _run(tmp_path)
    kb = {"owner key": rate(76), "fresh key for gallery and probes": rate(12), "probes under another key": rate(9),
          "not a rate": {"note": "no hits recorded"}, "a list": [1, 2]}
    (run / "results.json").write_text(json.dumps({**results(), "key_binding": kb}))
    data = collect(run)
    assert list(data.key_binding) == ["owner key", "fresh key for gallery and probes", "probes under another key"]
    view = data.key_binding["probes under another key"]
    assert (view.hits, view.n, view.chance) == (9, 200, 0.05) and view.lo < view.rate < view.hi
    html = build_report(run).read_text()
    table = html[html.index('id="key-binding-table"'):]
    table = table[:table.index("</table>")]
    for name, hits in (("owner key", 76), ("fresh key for gallery and probes", 12), ("probes under another key", 9)):
        row = table[table.index(f"<td>{name}</td>"):]
        row = row[:row.index("</tr>")]
        assert f"{100 * hits / 200:.1f}" in row and f"{hits} / 200" in row.replace("&nbsp;", " "), row
    assert "not a rate" not in table and "a list" not in table


def test_no_key_binding_no_section(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert collect(run).key_binding == {}
    assert 'id="key-binding-table"' not in build_report(run).read_text()


@pytest.mark.parametrize("payload, kind", [([1, 2], "list"), ("text", "str"), (3, "int"), (None, "NoneType")])
def test_attack_file_that_is_not_an_object_is_an_error_naming_it(tmp_path: Path, payload, kind: str) -> None:
    run = _run(tmp_path)
    (run / "attacks" / "expectation_xnn_aux_a.json").write_text(json.dumps(payload))
    with pytest.raises(VeilError, match=rf"expectation_xnn_aux_a\.json holds a JSON {kind}, expected an object"):
        collect(run)


def test_attack_file_without_a_rate_is_noted_and_left_out(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "attacks" / "expectation_xnn_aux_a.json").write_text(json.dumps(
        {"attack": "expectation", "method": "xnn", "aux": "aux_a", "rate": "high", "ci95": "wide"}))
    data = collect(run)
    assert "attacks/expectation_xnn_aux_a.json: no leakage rate recorded" in data.missing
    assert not [r for r in data.attacks if r.source == "expectation_xnn_aux_a.json"]
    assert [r for r in data.attacks if r.source == "expectation_xnn_aux_b.json"]  # the others still render
    assert "no leakage rate recorded" in build_report(run).read_text()


def test_known_plaintext_points_without_k_or_rate_are_skipped(tmp_path: Path) -> None:
    run = _run(tmp_path)
    path = run / "attacks" / "known_plaintext_xnn_pooled.json"
    d = json.loads(path.read_text())
    d["points"] = [{"k": 4, **rate(60)}, {"k": "many", **rate(70)}, {"k": 1}, "junk", {"k": 0, **rate(30)}]
    path.write_text(json.dumps(d))
    data = collect(run)
    (curve,) = [c for c in data.curves if c.source == path.name]
    assert [p.k for p in curve.points] == [0, 4]  # sorted, the three bad points skipped
    assert data.missing.count(f"attacks/{path.name}: a point without k or rate was skipped") == 3
    (row,) = [r for r in data.attacks if r.source == path.name]
    assert row.leakage.hits == 60 and row.variant.endswith("k = 4 (largest)")


@pytest.mark.parametrize("points", [[], None, [{"k": 1}]])
def test_known_plaintext_without_points_is_noted(tmp_path: Path, points) -> None:
    run = _run(tmp_path)
    path = run / "attacks" / "known_plaintext_xnn_pooled.json"
    d = {**json.loads(path.read_text()), "points": points}
    path.write_text(json.dumps(d))
    data = collect(run)
    assert f"attacks/{path.name}: no points" in data.missing
    assert not [c for c in data.curves if c.source == path.name]
    assert not [r for r in data.attacks if r.source == path.name]
    build_report(run)  # still renders
