"""``veil demo``: the whole XNN flow on the default dataset, with a results table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.cli.faces import align_option, on_no_face_option
from veil.demo import run_xnn
from veil.device import configure_threads, pick_device
from veil.faces.config import face_config
from veil.presets import PRESETS


def results_table(summary: dict) -> Table:
    ext = summary.get("extractor_info") or {}
    shape = ext.get("token_shape")
    tokens = f", {shape[0]} tokens x {shape[1]}" if shape else ""
    kind = "SYNTHETIC" if summary["synthetic"] else "real data"
    table = Table(title=f"XNN on {Path(summary['data']).name} ({summary['preset']} preset, {kind}; "
                        f"ExtNet {ext.get('name', '?')}{tokens})")
    for col in ("method", "top-1", "95% CI", "n probes", "gallery", "chance"):
        table.add_column(col, justify="right" if col != "method" else "left", no_wrap=True)
    for name, u in summary["utility"].items():
        table.add_row(name, f"{100 * u['rate']:.2f}%", f"[{100 * u['ci95'][0]:.2f}, {100 * u['ci95'][1]:.2f}]",
                      str(u["n"]), str(u["gallery"]), f"{100 * u['chance']:.2f}%")
    r = summary["ratio_xnn_over_vanilla"]
    table.caption = (f"XNN / Vanilla+PE utility = {100 * r['ratio']:.1f}% [{100 * r['ci95'][0]:.1f}, "
                     f"{100 * r['ci95'][1]:.1f}] (bootstrap over {r['identities']} identities)")
    return table


def attacks_table(summary: dict) -> Table | None:
    """Leakage of the cheap attacks the demo ran, each with n, interval and chance."""
    attacks = summary.get("attacks")
    if not attacks:
        return None
    table = Table(title="What an adversary learns: top-1 identification of the owner's test persons",
                  caption="k = leaked (image, store row) pairs. Owner-keyed gallery: the key does not matter "
                          "(pooled cosine needs no key, no pair). Clean gallery (the adversary's own photos): "
                          "the key matters until enough pairs leak")
    for col in ("attack", "store", "top-1", "95% CI", "n", "chance"):
        table.add_column(col, justify="left" if col in ("attack", "store") else "right", no_wrap=True)
    from veil.obfuscation import registry

    for method, r in attacks.items():  # "xnn, clean gallery": the XNN store against the adversary's own photos
        for p in r["points"]:
            what = p.get("label") or ("pooled cosine, k=0" if p["k"] == 0 else f"known-plaintext, k={p['k']}")
            table.add_row(what, registry.lookup(method.split(",")[0]).display(), f"{100 * p['rate']:.2f}%",
                          f"[{100 * p['ci95'][0]:.2f}, {100 * p['ci95'][1]:.2f}]", str(p["n"]),
                          f"{100 * p['chance']:.2f}%")
    return table


@friendly
def demo(data: Path = typer.Option(None, help="Face dataset (default: ../shared/data/lfw112 or $VEIL_DATA)."),
         out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory."),
         preset: str = typer.Option("demo", help=f"Sizes: {', '.join(PRESETS)}."),
         device: str = typer.Option(None, help="cpu, cuda (default: auto)."),
         align: str = align_option(), on_no_face: str = on_no_face_option(),
         quiet: bool = typer.Option(False, help="No progress bars.")) -> None:
    """Run XNN end to end on aligned faces: split, key, ExtNet, obfuscate, cloud training, evaluation, attacks."""
    faces = face_config(align, on_no_face)
    configure_threads()
    if preset not in PRESETS:
        raise typer.BadParameter(f"preset must be one of {', '.join(PRESETS)}")
    summary = run_xnn(data, out, preset, pick_device(device), show_progress=not quiet, log=console.print,
                      align=faces)
    console.print(results_table(summary))
    attacks = attacks_table(summary)
    if attacks is not None:
        console.print(attacks)
    console.print(f"report: veil report {out}")
    console.print(f"results: {out / 'results.json'}  (wall {summary['wall_seconds']:.0f}s)")
