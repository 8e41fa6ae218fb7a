"""``veil xnnd ...``: train XNN-d (noise encoder + distilled server RecNet); utility and the black-box attack."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError
from veil.io import write_json

app = typer.Typer(help="XNN-d private inference: adversarial noise encoder + distilled server RecNet.",
                  no_args_is_help=True)

DATA = typer.Option(..., help="Face dataset folder (e.g. ../shared/data/lfw112).")
SPLIT = typer.Option(..., help="split.json from `veil data split`.")
EXTRACTOR = typer.Option(..., help="Public ExtNet checkpoint (from `veil extractor pretrain`).")
RUN = typer.Option(..., "--run", help="Directory written by `veil xnnd train`.")
DEVICE = typer.Option(None, help="cpu, cuda (default: CUDA when present).")


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}] (n={r['n']})"


@app.command("train")
@friendly
def train(data: Path = DATA, split: Path = SPLIT, extractor: Path = EXTRACTOR,
          out: Path = typer.Option(Path("runs/xnnd"), "--out", "-o"),
          group: str = typer.Option("owner_train", help="The owner's training identities."),
          eps: float = typer.Option(1.0, help="Noise bound: per-token RMS of the noise (clean tokens have RMS 1)."),
          adv_epochs: int = typer.Option(6), adv_weight: float = typer.Option(1.0),
          adv_batch: int = typer.Option(64), encoder_lr: float = typer.Option(1e-3),
          teacher_epochs: int = typer.Option(30), student_epochs: int = typer.Option(30),
          temperature: float = typer.Option(4.0), kd_weight: float = typer.Option(0.3),
          ce_weight: float = typer.Option(1.0), seed: int = typer.Option(0), device: str = DEVICE) -> None:
    """Stage 1 (adversarial noise) then stage 2 (distillation); writes fg / recnet_server / recnet_baseline."""
    from veil.data.splits import Split
    from veil.device import configure_threads, pick_device
    from veil.models.extractor import load_extnet
    from veil.pipeline import load_group
    from veil.xnnd.config import AdversarialConfig, DistillConfig, XnndConfig
    from veil.xnnd.train import train_xnnd

    configure_threads()
    dev = pick_device(device)
    s = Split.load(split)
    if group.startswith(("aux", "public")) or group == "owner_test":
        raise VeilError(f"train on the owner's training identities, not {group!r}")
    ext = load_extnet(extractor)
    faces = load_group(data, s, group, ext.cfg.img_size)
    cfg = XnndConfig(AdversarialConfig(epochs=adv_epochs, eps=eps, adv_weight=adv_weight, batch_size=adv_batch,
                                       encoder_lr=encoder_lr, seed=seed),
                     DistillConfig(epochs=teacher_epochs, kd_weight=0.0, seed=seed),
                     DistillConfig(epochs=student_epochs, temperature=temperature, kd_weight=kd_weight,
                                   ce_weight=ce_weight, seed=seed))
    hist = train_xnnd(ext, faces, out, cfg, dev, log=lambda m: console.print(f"[dim]{m}[/]"))
    console.print(f"wrote {out}/fg.safetensors (client secret: keep it on the client), "
                  f"{out}/recnet_server.safetensors (give to the server), {out}/recnet_baseline.safetensors; "
                  f"{hist['seconds']:.0f}s")


@app.command("attack")
@friendly
def attack(run: Path = RUN, data: Path = DATA, split: Path = SPLIT,
           aux: str = typer.Option("aux_a", help="Attacker's auxiliary identity group: aux_a or aux_b."),
           baseline: bool = typer.Option(False, help="Attack the baseline FG (no noise) instead of XNN-d's."),
           budgets: str = typer.Option("", help="Comma-separated numbers of aux images for a query-count curve."),
           epochs: int = typer.Option(20, help="Attacker RecNet epochs."), seed: int = typer.Option(0),
           device: str = DEVICE, json_out: Path = typer.Option(None, "--json")) -> None:
    """Black-box attack (paper 5.3) and utility, owner's test persons; leakage beside chance."""
    from veil.attacks.recnet_fit import AttackRecNetConfig
    from veil.data.splits import Split
    from veil.device import configure_threads, pick_device
    from veil.models.recnet import load_recnet
    from veil.xnnd.generator import FeatureGenerator, load_generator
    from veil.xnnd.harness import Harness

    configure_threads()
    if aux not in ("aux_a", "aux_b"):
        raise VeilError(f"--aux must be aux_a or aux_b, got {aux!r}")
    try:
        sizes = tuple(int(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        raise VeilError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
    fg, _ = load_generator(run / "fg.safetensors")
    if baseline:
        fg = FeatureGenerator(fg.ext)
    recnet, _ = load_recnet(run / ("recnet_baseline.safetensors" if baseline else "recnet_server.safetensors"))
    h = Harness(data, Split.load(split), pick_device(device))
    test = h.group("owner_test", fg.ext.cfg.img_size)
    target = h.target(fg, test)
    util = h.utility(fg, recnet, test)
    bb = h.black_box(fg, target, h.group(aux, fg.ext.cfg.img_size), AttackRecNetConfig(epochs=epochs, seed=seed),
                     sizes, seed)
    name = "baseline" if baseline else "XNN-d"
    table = Table(title=f"{name}: utility and black-box attack ({aux})")
    for col in ("figure", "top-1", "chance"):
        table.add_column(col)
    table.add_row("utility (server RecNet)", _pct(util), f"{100 * util['chance']:.2f}%")
    for p in bb["curve"]:
        table.add_row(f"black-box ASR, {p['queries']} queries", _pct(p), f"{100 * p['chance']:.2f}%")
    console.print(table)
    if json_out:
        write_json(json_out, {"method": name, "aux": aux, "utility": util, "black_box": bb}, indent=1)
        console.print(f"wrote {json_out}")
