"""``veil demo``: the whole XNN flow on the default dataset, with a results table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.demo import PRESETS, run_xnn
from veil.device import configure_threads, pick_device


def results_table(summary: dict) -> Table:
    table = Table(title=f"XNN on {Path(summary['data']).name} ({summary['preset']} preset, "
                        f"{'SYNTHETIC' if summary['synthetic'] else 'real data'})")
    for col in ("method", "utility top-1", "95% CI", "n probes", "gallery", "chance"):
        table.add_column(col, justify="right" if col != "method" else "left", no_wrap=True)
    for name, u in summary["utility"].items():
        table.add_row(name, f"{100 * u['rate']:.2f}%", f"[{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}]",
                      str(u["n"]), str(u["gallery"]), f"{100 * u['chance']:.2f}%")
    r = summary["ratio_xnn_over_vanilla"]
    table.caption = (f"XNN / Vanilla+PE utility = {100 * r['ratio']:.1f}% [{100 * r['ci95'][0]:.1f}, "
                     f"{100 * r['ci95'][1]:.1f}] (bootstrap over {r['identities']} identities)")
    return table


@friendly
def demo(data: Path = typer.Option(None, help="Face dataset (default: ../shared/data/lfw112 or $VEIL_DATA)."),
         out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory."),
         preset: str = typer.Option("demo", help=f"Sizes: {', '.join(PRESETS)}."),
         device: str = typer.Option(None, help="cpu, cuda (default: auto)."),
         quiet: bool = typer.Option(False, help="No progress bars.")) -> None:
    """Run XNN end to end: split, key, pre-train ExtNet, obfuscate, cloud training, evaluation."""
    configure_threads()
    if preset not in PRESETS:
        raise typer.BadParameter(f"preset must be one of {', '.join(PRESETS)}")
    summary = run_xnn(data, out, preset, pick_device(device), show_progress=not quiet, log=console.print)
    console.print(results_table(summary))
    console.print(f"results: {out / 'results.json'}  (wall {summary['wall_seconds']:.0f}s)")
