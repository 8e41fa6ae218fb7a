"""``veil report``: one self-contained HTML page summarising a run directory.

``collect`` reads the run's JSON summaries (never the key), ``plots`` and ``tsne`` draw the figures as
embedded PNGs, ``html`` renders the page. The public entry point is ``build_report``.
"""

from __future__ import annotations

from pathlib import Path


def build_report(run_dir: str | Path, out: str | Path | None = None, tsne: bool = True, persons: int = 8,
                 seed: int = 0, command: str | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``); imports matplotlib/sklearn only when called."""
    from veil.report.html import build_report as _build

    return _build(run_dir, out, tsne=tsne, persons=persons, seed=seed, command=command)


__all__ = ["build_report"]
