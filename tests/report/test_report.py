"""``veil report`` without a browser: content, missing and corrupt inputs, secrecy, escaping, the CLI.

All run directories here are SYNTHETIC (``tests/report/synth_run.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.report.synth_run import FINGERPRINT, SECRET, make_run, results
from veil.errors import VeilError
from veil.report import build_report
from veil.report.collect import RateView, collect


def test_page_holds_every_section(synthetic_report: tuple[Path, Path]) -> None:
    run, page = synthetic_report
    assert page == run / "report.html"
    html = page.read_text()
    for anchor in ('id="utility-table"', 'id="ratio-row"', 'id="table2"', 'id="table5"', 'id="attacks-table"',
                   'id="kp-table-1"', 'id="tradeoff-plot"', 'id="kp-plot"', 'id="tsne-plot"', 'id="provenance-table"',
                   'id="synthetic-banner"'):
        assert anchor in html, anchor
    assert 'id="missing"' not in html
    # every rate carries its n and interval: XNN utility 76/200, Wilson CI from veil.metrics
    assert "38.00%" in html and "76 / 200" in html and "[31.56, 44.89]" in html
    assert "IH(k=3)" in html and "NC" in html and "frozen RecNet" in html
    assert "whitened pooled, no inversion" in html and "k = 16 (largest)" in html
    assert "aux_a, clean gallery (adversary&#39;s own photos)" in html
    # the stores are row-aligned and the synthetic obfuscation is orthogonal: distances kept exactly
    corr = re.search(r'id="tsne-corr">([0-9.]+)<', html)
    assert corr and float(corr.group(1)) > 0.999


def test_page_is_self_contained(synthetic_report: tuple[Path, Path]) -> None:
    html = synthetic_report[1].read_text()
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', html), "every resource must be an inline data: URI"
    assert "<script" not in html
    assert html.count('src="data:image/png;base64,') == 3


def test_key_material_never_reaches_the_page(synthetic_report: tuple[Path, Path]) -> None:
    run, page = synthetic_report
    html = page.read_text()
    assert SECRET in (run / "owner.key").read_text()
    assert SECRET not in html
    assert FINGERPRINT not in html
    assert "owner.key</code>" not in html  # not listed among the files read


def test_missing_files_render_with_notes(tmp_path: Path) -> None:
    run = tmp_path / "partial"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results()))
    html = build_report(run).read_text()
    assert 'id="utility-table"' in html
    assert 'id="table2"' not in html and 'id="attacks-table"' not in html and 'id="tsne-plot"' not in html
    assert "missing: table2.json is missing" in html
    assert "missing: attacks/*.json is missing" in html
    assert "store_vanilla, store_xnn missing" in html


def test_empty_run_dir_still_renders(tmp_path: Path) -> None:
    html = build_report(tmp_path, tmp_path / "out" / "r.html").read_text()
    assert "missing: results.json is missing" in html and "No utility recorded" in html


def test_absent_fields_are_tolerated(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", with_stores=False)
    res = results()
    del res["utility"]["XNN"]["ci95"]  # recomputed (Wilson) from hits and n
    del res["utility"]["Vanilla+PE"]["n"]
    del res["ratio_xnn_over_vanilla"]
    (run / "results.json").write_text(json.dumps(res))
    data = collect(run)
    assert data.utility["XNN"].lo == pytest.approx(0.3156, abs=1e-4)
    html = build_report(run, tsne=False).read_text()
    assert "n missing" in html and "has no &#39;ratio_xnn_over_vanilla&#39;" in html
    assert "t-SNE skipped" in html


def test_tiny_stores_skip_tsne_with_a_note(tmp_path: Path) -> None:
    from tests.report.synth_run import stores

    run = make_run(tmp_path / "run", with_stores=False)
    stores(run, persons=2, per_person=2)
    html = build_report(run).read_text()
    assert 'id="tsne-plot"' not in html and "too few rows" in html


def test_corrupt_store_is_an_error(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "store_xnn" / "manifest.json").write_text("{")
    with pytest.raises(VeilError, match="store_xnn"):
        build_report(run)


@pytest.mark.parametrize("name", ["results.json", "table2.json", "attacks/cloud_xnn.json"])
def test_corrupt_json_names_the_file(tmp_path: Path, name: str) -> None:
    run = make_run(tmp_path / "run", with_stores=False)
    (run / name).write_text('{"rows": [')
    with pytest.raises(VeilError, match=re.escape(name)):
        build_report(run)


def test_json_strings_are_escaped(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", with_stores=False, with_table2=False)
    evil = {**json.loads((run / "attacks" / "cloud_xnn.json").read_text()), "method": "<script>alert(1)</script>"}
    (run / "attacks" / "cloud_xnn.json").write_text(json.dumps(evil))
    html = build_report(run).read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_rate_view_computes_missing_interval() -> None:
    view = RateView.parse({"hits": 5, "n": 10})
    assert view is not None and view.rate == 0.5 and view.lo is not None and view.lo < 0.5 < view.hi
    assert RateView.parse({"gallery": 3}) is None


def test_cli_writes_the_page(tmp_path: Path) -> None:
    from veil.cli.app import app

    run = make_run(tmp_path / "run", with_stores=False)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--no-tsne"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "veil report" in out.read_text()


def test_cli_missing_dir_exits_2(tmp_path: Path) -> None:
    from veil.cli.app import app

    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0]


def test_cli_corrupt_json_exits_2(tmp_path: Path) -> None:
    from veil.cli.app import app

    run = make_run(tmp_path / "run", with_stores=False)
    (run / "results.json").write_text("not json")
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "results.json" in result.output and "Traceback" not in result.output
