"""``veil cascade``: run layer servers, list the pool, train and test a model spread over a cascade."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError

app = typer.Typer(help="MixNN: a model spread over a cascade of layer servers (onion-encrypted packets).",
                  no_args_is_help=True)


@app.command()
@friendly
def node(listen: str = typer.Option("127.0.0.1:0", help="HOST:PORT to listen on (port 0 picks one)."),
         pool: Path = typer.Option(..., help="Pool file to register in (created if missing)."),
         log_file: Path | None = typer.Option(None, help="Also append the log here."),
         misbehave: str | None = typer.Option(None, hidden=True, help="Testing only: 'corrupt' outputs.")) -> None:
    """Run one layer server until interrupted: fresh key pair, register, serve."""
    from veil.cascade.node import serve

    serve(listen, pool, misbehave=misbehave, log_file=log_file)


@app.command("pool")
@friendly
def pool_cmd(pool: Path = typer.Option(..., help="Pool file.")) -> None:
    """List the servers registered in a pool."""
    from veil.cascade import pool as pool_mod
    from veil.cascade.keys import fingerprint

    entries = pool_mod.load(pool)
    table = Table("address", "key fingerprint", "pid")
    for e in entries:
        table.add_row(e.address, fingerprint(e.public_key), str(e.pid))
    console.print(table)
    console.print(f"{len(entries)} server(s) in {pool}")


@app.command()
@friendly
def train(pool: Path = typer.Option(..., help="Pool file of running servers."),
          model: str = typer.Option("mlp", help="Model TOML file, or the built-in 'mlp'."),
          data: Path | None = typer.Option(None, help="MNIST idx directory; omitted: scikit-learn digits."),
          epochs: int = typer.Option(3, min=1), dummies: int = typer.Option(1, min=0),
          seed: int = typer.Option(0), loop_rate: int = typer.Option(1, min=0, help="Loop messages per step."),
          checkpoint_every: int | None = typer.Option(None, help="Steps between checkpoints (default: epoch)."),
          min_accuracy: float | None = typer.Option(None, help="Byzantine check at each epoch's test phase."),
          keep_loss: bool = typer.Option(False, help="Keep the NLL loss and labels at the designer."),
          out: Path = typer.Option(Path("runs/cascade"), help="Where the model, cascade and metrics go.")) -> None:
    """Train through a cascade picked at random from the pool; writes model, cascade and metrics to OUT."""
    import torch

    from veil.cascade import checkpoint
    from veil.cascade import data as D
    from veil.cascade.designer import Designer
    from veil.cascade.models import load_spec

    torch.set_num_threads(1)
    ds = D.load(data, seed)
    spec = load_spec(model, ds.input_dim)
    total = epochs * D.steps_per_epoch(len(ds.x_train), spec.batch)
    with Designer(pool, spec, dummies=dummies, seed=seed, loop_rate=loop_rate, checkpoint_every=checkpoint_every,
                  min_accuracy=min_accuracy, keep_loss=keep_loss) as des, _progress() as bar:
        task = bar.add_task("training", total=total)
        res = des.train(ds, epochs, on_step=lambda s, _t, loss: bar.update(task, completed=s,
                                                                            description=f"loss {loss:.3f}"))
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write(out / "model.safetensors", res.final, spec.layers)
        _write_private(out / "cascade.json", {"model": model, "keep_loss": des.keep_loss, "seed": seed,
                                              "cascade": des.cascade.describe()})
        metrics = {"accuracy": res.accuracy, "epoch_seconds": res.epoch_seconds, "events": res.events,
                   "loops_sent": des.loops_sent, "loops_returned": des.loops_returned, "data": ds.name}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    console.print(f"test accuracy {res.accuracy:.4f}; {len(res.events)} event(s); wrote {out}")


@app.command()
@friendly
def test(run: Path = typer.Option(Path("runs/cascade"), help="Directory written by 'veil cascade train'."),
         pool: Path | None = typer.Option(None, help="Pool file; needed with --redeploy."),
         data: Path | None = typer.Option(None, help="MNIST idx directory; omitted: scikit-learn digits."),
         redeploy: bool = typer.Option(False, help="Deploy the saved model on a fresh cascade first.")) -> None:
    """Test phase (op 3): held-out accuracy through the trained cascade, or a fresh one with --redeploy."""
    import torch

    from veil.cascade import checkpoint
    from veil.cascade import data as D
    from veil.cascade import pool as pool_mod
    from veil.cascade.designer import Cascade, Designer
    from veil.cascade.models import load_spec

    torch.set_num_threads(1)
    manifest_path = run / "cascade.json"
    if not manifest_path.is_file():
        raise VeilError(f"{manifest_path} not found; run 'veil cascade train --out {run}' first")
    manifest = json.loads(manifest_path.read_text())
    ds = D.load(data, int(manifest.get("seed", 0)))
    spec = load_spec(manifest["model"], ds.input_dim)
    if redeploy and pool is None:
        raise VeilError("--redeploy needs --pool")
    with Designer(pool or run / "unused-pool.json", spec, dummies=0, keep_loss=manifest.get("keep_loss", False),
                  loop_rate=0) as des:
        if redeploy:
            ckpt, _ = checkpoint.read(run / "model.safetensors")
            des.dummies = sum(1 for h in manifest["cascade"] if h["layer"] is None)
            des.setup(ckpt)
        else:
            hops = manifest["cascade"]
            des.cascade = Cascade([pool_mod.Entry(h["address"], bytes.fromhex(h["public_key"])) for h in hops],
                                  [h["layer"] for h in hops])
            try:
                des.measure_latency()
            except VeilError as exc:
                raise VeilError(f"the trained cascade is not reachable ({exc}); use --redeploy --pool") from None
        acc = des.test(ds.x_test, ds.y_test)
    console.print(f"test accuracy {acc:.4f} on {len(ds.x_test)} held-out {ds.name} samples")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _write_private(path: Path, obj: object) -> None:
    """The cascade's order and addresses are the designer's secret: 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)


if __name__ == "__main__":
    app()
