"""``veil bench``: the paper-table reproductions, on real data, with their JSON records."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.attacks.recnet_fit import AttackRecNetConfig, strong_attack_recipe
from veil.cli.common import console, friendly
from veil.device import configure_threads, pick_device
from veil.errors import VeilError
from veil.evaluation.table2 import METHODS, Table2Config, publish, run_table2
from veil.models.registry import DEFAULT_EXTRACTOR
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
           attack_epochs: int = typer.Option(5, help="Attacker RecNet epochs."),
           attack_recipe: str = typer.Option("strong", help="Attacker RecNet: strong (the cloud's: linear, identity "
                                                            "init) or transformer (2 blocks from scratch)."),
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
                       owner_epochs=owner_epochs,
                       attack=(strong_attack_recipe(attack_epochs, seed) if attack_recipe == "strong"
                               else AttackRecNetConfig(epochs=attack_epochs, seed=seed)),
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


@app.command("table4")
@friendly
def table4(data: Path = typer.Option(None, help="Face dataset (default: ../shared/data/lfw112 or $VEIL_DATA)."),
           run: Path = typer.Option(Path("runs/bench-table4"), "--run", help="Run directory (split, service files)."),
           split_file: Path = typer.Option(None, "--split", help="An existing split.json (default: RUN/split.json, "
                                           "made with the bench preset's split)."),
           tokens: Path = typer.Option(Path("runs/xnnd-tokens"), help="The owner's token cache (private; keep it "
                                       "under runs/, never in a shared cache)."),
           sweep: bool = typer.Option(False, help="The whole curve: every eps x adversary setting (aux_a only)."),
           eps: float = typer.Option(1.0, help="Default run: the noise bound of the one XNN-d setting."),
           adversary: str = typer.Option("weak", help="Default run: adversary strength (weak, strong)."),
           eps_list: str = typer.Option("0.5,1,2,4,8", "--eps-list", help="Sweep: noise bounds."),
           adversaries: str = typer.Option("weak,strong", help="Sweep: adversary strengths (weak, strong, steps)."),
           extra: str = typer.Option("", help="Sweep: further settings, e.g. '1/strong,4/steps'."),
           stage1_epochs: int = typer.Option(3), teacher_epochs: int = typer.Option(8),
           student_epochs: int = typer.Option(6), attack_epochs: int = typer.Option(8),
           recnet_depth: int = typer.Option(0, help="Depth of every RecNet (teacher, server, attackers); 0: the "
                                                    "cloud's strong recipe (linear, identity-initialised)."),
           encoder_depth: int = typer.Option(0, help="Token noise encoder: transformer blocks before its MLP."),
           budgets: str = typer.Option("200", help="Black-box query budgets below the full aux group."),
           ks: str = typer.Option("4,16,64,256", help="Known-plaintext numbers of leaked pairs."),
           extractor: str = typer.Option(DEFAULT_EXTRACTOR, help="Public ExtNet (name or file)."),
           results: Path = typer.Option(Path("bench/results/table4.json"), help="Where the JSON (+ .md, .png) go."),
           seed: int = typer.Option(0), device: str = typer.Option(None, help="cpu, cuda (default: auto)."),
           merge: list[Path] = typer.Option(None, "--merge", help="Join finished pieces of a sweep (table4.json, "
                                            "or a stopped run's table4_partial.json; repeat) into --results."),
           quiet: bool = typer.Option(False, help="No progress bars."),
           record_command: str = typer.Option(None, hidden=True, help="The command recorded in the results "
                                              "(bench/table4.py passes its own).")) -> None:
    """XNN-d (paper Table 4): baseline vs noise encoder, utility and four attacks; --sweep for the curve + verdict."""
    import shlex
    import sys

    from veil.bench import write_result
    from veil.paths import resolve_data
    from veil.pipeline import prepare_split
    from veil.presets import PRESETS as _PRESETS
    from veil.xnnd.sweep import ADVERSARIES, SweepConfig
    from veil.xnnd.table4 import publish, run_table4, verdict_sentence

    configure_threads()
    if merge:
        from veil.bench import environment
        from veil.models.extractor import extnet_digest, load_extnet
        from veil.xnnd.table4 import load_result
        from veil.xnnd.table4 import merge as merge_results

        ext = load_extnet(extractor)
        shell = {"benchmark": "table4", "data": str(data or ""), "seed": seed, "device": "cpu",
                 "environment": environment(pick_device(device)),
                 "extractor": {"name": extractor, "digest": extnet_digest(ext), "token_shape": list(ext.token_shape)}}
        res = merge_results([load_result(p) for p in merge], shlex.join(["veil", *sys.argv[1:]]), shell)
        js, md, png = publish(res, results)
        console.print(f"verdict: {verdict_sentence(res['verdict'])}\nwritten: {js}, {md}, {png}")
        return

    def ints(s: str, what: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in s.split(",") if x.strip())
        except ValueError:
            raise VeilError(f"--{what} must be comma-separated integers, got {s!r}") from None

    try:
        eps_values = tuple(float(x) for x in eps_list.split(",") if x.strip())
    except ValueError:
        raise VeilError(f"--eps-list must be comma-separated numbers, got {eps_list!r}") from None
    advs = tuple(a.strip() for a in adversaries.split(",") if a.strip())
    for a in advs + (adversary,):
        if a not in ADVERSARIES:
            raise VeilError(f"adversary must be one of {', '.join(ADVERSARIES)}, got {a!r}")
    if min((stage1_epochs, teacher_epochs, student_epochs, attack_epochs)) < 1 or not eps_values or eps < 0:
        raise VeilError("epochs must be >= 1 and eps >= 0")
    extras = tuple(x.strip() for x in extra.split(",") if x.strip())
    for x in extras:
        if x.partition("/")[2] not in ADVERSARIES:
            raise VeilError(f"--extra wants EPS/ADVERSARY items ({', '.join(ADVERSARIES)}), got {x!r}")
    if recnet_depth < 0 or encoder_depth < 0:
        raise VeilError("--recnet-depth and --encoder-depth must be >= 0")
    cfg = SweepConfig(eps_values, advs, stage1_epochs, teacher_epochs, student_epochs, attack_epochs,
                      ints(budgets, "budgets"), ints(ks, "ks"), seed, recnet_depth, encoder_depth, extras)
    data_path = resolve_data(data)
    if split_file is not None:
        from veil.data.splits import Split

        split = Split.load(split_file)
    else:
        split = prepare_split(data_path, run / "split.json", _PRESETS["bench"].split)
    command = record_command or (shlex.join(["veil", *sys.argv[1:]]) if "table4" in sys.argv
                                 else "veil bench table4")
    res = run_table4(data_path, split, run, cfg, sweep, eps, adversary, extractor, pick_device(device),
                     not quiet, console.print, command, tokens)
    js, md, png = publish(res, results)
    write_result(run / "table4.json", res)  # beside the run, where `veil report RUN` finds the curve
    console.print(f"verdict: {verdict_sentence(res['verdict'])}")
    console.print(f"written: {js}, {md}" + (f", {png}" if png else "") + f"  (wall {res['wall_seconds'] / 60:.1f} min)")
