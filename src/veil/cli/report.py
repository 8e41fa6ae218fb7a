"""``veil report RUN_DIR``: summarise a run directory as one self-contained HTML page."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from veil.cli.common import console, friendly


@friendly
def report(run_dir: Path = typer.Argument(..., help="Run directory (results.json, attacks/, stores, table2.json)."),
           out: Path = typer.Option(None, "--out", "-o", help="HTML file to write (default: RUN_DIR/report.html)."),
           tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="Draw the t-SNE of clean vs obfuscated features."),
           persons: int = typer.Option(8, min=2, max=10, help="Persons in the t-SNE figure."),
           seed: int = typer.Option(0, help="Seed of the t-SNE and of its row sampling.")) -> None:
    """Tables (utility, Table 2, Table 5, every attack), plots, t-SNE and provenance in one HTML file.

    Reads only the run's JSON summaries and stores; the owner's key file is never opened.
    """
    from veil.report import build_report

    parts = ["veil", "report", str(run_dir)] + (["--out", str(out)] if out else []) + ([] if tsne else ["--no-tsne"])
    parts += [f"--persons={persons}"] if persons != 8 else []
    parts += [f"--seed={seed}"] if seed else []
    command = " ".join(shlex.quote(p) for p in parts)
    path = build_report(run_dir, out, tsne=tsne, persons=persons, seed=seed, command=command)
    console.print(f"wrote {path}")
