"""``veil bench``: the paper-table reproductions, on real data, with their JSON records."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.attacks.recnet_fit import AttackRecNetConfig
from veil.cli.common import console, friendly
from veil.device import configure_threads, pick_device
from veil.errors import VeilError
from veil.evaluation.table2 import METHODS, Table2Config, publish, run_table2
from veil.presets import PRESETS

app = typer.Typer(help="Reproduce the papers' tables (Table 2 + Table 5: methods, expectation attack, ablations).",
                  no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Paper-table reproductions."""


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"


def table2_table(payload: dict) -> Table:
    groups = list(payload["rows"][0]["leakage"]) if payload["rows"] else []
    table = Table(title=f"Table 2 on {Path(payload['data']).name}: utility and expectation-attack leakage")
    for col in ("method", "utility (95% CI)", *[f"leakage {g}" for g in groups], "chance", "n probes"):
        table.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for r in payload["rows"]:
        table.add_row(r["method"], _pct(r["utility"]), *[_pct(r["leakage"][g]) for g in groups],
                      f"{100 * r['chance']:.2f}%", str(r["utility"]["n"]))
    return table


@app.command("table2")
@friendly
def table2(data: Path = typer.Option(None, help="Face dataset (default: ../shared/data/lfw112 or $VEIL_DATA)."),
           out: Path = typer.Option(Path("runs/table2"), "--out", "-o", help="Run directory."),
           preset: str = typer.Option("bench", help=f"Extractor and recipe sizes: {', '.join(PRESETS)}."),
           methods: str = typer.Option(",".join(METHODS), help="Comma-separated rows to run."),
           owner_epochs: int = typer.Option(None, help="Owner RecNet epochs (default: the preset's cloud recipe)."),
           attack_epochs: int = typer.Option(20, help="Attacker RecNet epochs."),
           ablations: bool = typer.Option(True, help="Also run the Table 5 ablations."),
           results: Path = typer.Option(None, help="Also write table2.json + table2.md into this folder."),
           seed: int = typer.Option(0, help="Training seed."),
           device: str = typer.Option(None, help="cpu, cuda (default: auto)."),
           quiet: bool = typer.Option(False, help="No progress bars.")) -> None:
    """Vanilla+PE, InstaHide k=2/3, NeuraCrypt and XNN: utility, leakage per auxiliary group, chance; ablations."""
    configure_threads()
    if owner_epochs is not None and owner_epochs < 1 or attack_epochs < 1:
        raise VeilError("epochs must be >= 1")
    cfg = Table2Config(preset=preset, methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                       owner_epochs=owner_epochs, attack=AttackRecNetConfig(epochs=attack_epochs, seed=seed),
                       ablations=ablations, seed=seed)
    command = "veil bench table2 " + " ".join(f"--{k} {v}" for k, v in (
        ("preset", preset), ("owner-epochs", owner_epochs), ("attack-epochs", attack_epochs), ("seed", seed))
        if v is not None)
    payload = run_table2(data, out, cfg, pick_device(device), console.print, not quiet, command)
    console.print(table2_table(payload))
    console.print(f"results: {out / 'table2.json'}  (wall {payload['wall_seconds']:.0f}s)")
    if results is not None:
        js, md = publish(payload, results)
        console.print(f"written: {js}, {md}")
