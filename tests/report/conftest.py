"""One SYNTHETIC run directory and its report, built once and shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.synth_run import make_run


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, report.html) for the full SYNTHETIC run: results, attacks, table2, stores, fake key."""
    from veil.report import build_report

    run = make_run(tmp_path_factory.mktemp("report") / "run-synthetic")
    return run, build_report(run)
