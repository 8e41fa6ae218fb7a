"""``veil cascade``: run layer servers, list the pool, train and test a model spread over a cascade."""

from __future__ import annotations

import json
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
         transport: str = typer.Option("zmq", help="How packets travel: zmq (default, faster) or grpc."),
         mix_delay_ms: float = typer.Option(0.0, min=0.0, help="Mean Poisson mixing delay per packet (0: off)."),
         session_idle: float = typer.Option(600.0, min=1.0, help="Seconds before an idle run's session lapses."),
         link_delay_ms: float = typer.Option(0.0, min=0.0, max=10_000.0,
                                             help="Emulation: hold each received packet this long (link delay)."),
         misbehave: str | None = typer.Option(None, hidden=True, help="Testing only: 'corrupt' outputs.")) -> None:
    """Run one layer server until interrupted: fresh key pair, register, serve."""
    from veil.cascade.node import serve
    from veil.cascade.testing import misbehaviour

    tamper = misbehaviour(misbehave) if misbehave else None  # tests only: a Byzantine node
    serve(listen, pool, tamper=tamper, log_file=log_file, transport=transport, mix_delay=mix_delay_ms / 1000,
          session_idle=session_idle, link_delay=link_delay_ms / 1000)


pool_app = typer.Typer(help="The server directory: list it, or prune dead entries.", invoke_without_command=True)
app.add_typer(pool_app, name="pool")


@pool_app.callback()
@friendly
def pool_cmd(ctx: typer.Context, pool: Path = typer.Option(..., help="Pool file.")) -> None:
    """List the servers registered in a pool (``veil cascade pool --pool P``)."""
    ctx.obj = pool
    if ctx.invoked_subcommand is not None:
        return
    from veil.cascade import pool as pool_mod
    from veil.cascade.keys import fingerprint

    entries = pool_mod.load(pool)
    table = Table("address", "transport", "key fingerprint", "pid")
    for e in entries:
        table.add_row(e.address, e.transport, fingerprint(e.public_key), str(e.pid))
    console.print(table)
    console.print(f"{len(entries)} server(s) in {pool}")


@pool_app.command("prune")
@friendly
def pool_prune(ctx: typer.Context,
               timeout: float = typer.Option(3.0, min=0.1, help="Seconds a server has to answer the probe."),
               ) -> None:
    """Ping every entry and remove only those that do not answer. The ping needs no session: a server bound
    to a run (even one whose designer is gone) answers it and stays, and so does one whose clock is off."""
    from veil.cascade import constants as C
    from veil.cascade import pool as pool_mod
    from veil.cascade import transport as transport_mod
    from veil.cascade.inbox import Inbox
    from veil.cascade.liveness import ping

    pool: Path = ctx.obj
    entries = pool_mod.load(pool)
    answers: dict = {}
    for name in sorted({e.transport for e in entries}):
        tr = transport_mod.make(name)
        inbox = Inbox(tr, C.CELL_SIZES[0])
        try:
            answers.update(ping(inbox, [e for e in entries if e.transport == name], timeout))
        finally:
            inbox.close()
            tr.close()
    for e in entries:
        if answers[e.address].alive and (answers[e.address].bound or answers[e.address].skewed):
            console.print(f"kept {e.address}: {answers[e.address].describe()}")
    removed = pool_mod.remove(pool, {a for a, ans in answers.items() if not ans.alive})
    for e in removed:
        console.print(f"removed {e.address} (pid {e.pid}): no answer to a ping within {timeout:.1f} s")
    console.print(f"{len(entries) - len(removed)} of {len(entries)} server(s) answered; {len(removed)} removed")


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
          microbatches: int = typer.Option(1, min=1, help="GPipe-style micro-batches in flight per batch."),
          transport: str = typer.Option("zmq", help="zmq (default) or grpc; only pool servers of that kind."),
          digits28: bool = typer.Option(False, help="Without --data: digits upsampled to 28x28 (784 inputs)."),
          out: Path = typer.Option(Path("runs/cascade"), help="Where the model, cascade and metrics go."),
          force: bool = typer.Option(False, help="Replace an earlier run in --out.")) -> None:
    """Train through a cascade picked at random from the pool; writes model, cascade and metrics to OUT."""
    import torch

    from veil.cascade import constants as C
    from veil.cascade import data as D
    from veil.cascade import runfiles
    from veil.cascade.designer import Designer
    from veil.cascade.models import load_spec

    runfiles.check_out_dir(out, force)  # before any node is bound or any epoch is spent
    torch.set_num_threads(1)
    ds = D.load(data, seed, upsample=digits28)
    spec = load_spec(model, ds.input_dim)
    total = epochs * D.steps_per_epoch(len(ds.x_train), spec.batch)
    # the cascade stays deployed for 'veil cascade test --run OUT', which releases it (sessions also lapse)
    with Designer(pool, spec, dummies=dummies, seed=seed, loop_rate=loop_rate, checkpoint_every=checkpoint_every,
                  min_accuracy=min_accuracy, keep_loss=keep_loss, microbatches=microbatches, transport=transport,
                  release_on_close=False) as des, _progress() as bar:
        task = bar.add_task("training", total=total)
        res = des.train(ds, epochs, on_step=lambda s, _t, loss: bar.update(task, completed=s,
                                                                            description=f"loss {loss:.3f}"))
        assert des.cascade is not None and res.final is not None
        manifest = {"model": model, "keep_loss": des.keep_loss, "seed": seed, "data": ds.name,
                    "transport": transport, "microbatches": microbatches,
                    "cascade": des.cascade.describe(secrets=True)}
        metrics = {"accuracy": res.accuracy, "epoch_seconds": res.epoch_seconds, "events": res.events,
                   "loops_sent": des.loops_sent, "loops_returned": des.loops_returned, "data": ds.name}
        try:
            runfiles.save_run(out, res.final, spec.layers, manifest, metrics)
        except OSError as exc:
            des.release_on_close = True  # the secrets are lost with the write: free the nodes on the way out
            kept = runfiles.save_recovery(out, res.final, spec.layers, metrics)
            raise VeilError(f"could not write the run to {out} ({exc.strerror or exc}); the trained model and "
                            f"metrics are kept in {kept} and the cascade's nodes were released") from None
    skews = [s for e in res.events if e.get("event") == "clock" for s in e["skew_s"].values()]
    if skews:
        console.print(f"clock skew to the cascade's nodes: {min(skews):+.1f} to {max(skews):+.1f} s "
                      f"(packets tolerate +-{C.CLOCK_SKEW_S:g} s)")
    console.print(f"test accuracy {res.accuracy:.4f}; {len(res.events)} event(s); wrote {out}")


@app.command()
@friendly
def test(run: Path = typer.Option(Path("runs/cascade"), help="Directory written by 'veil cascade train'."),
         pool: Path | None = typer.Option(None, help="Pool file; needed with --redeploy."),
         data: Path | None = typer.Option(None, help="MNIST idx directory; omitted: scikit-learn digits."),
         redeploy: bool = typer.Option(False, help="Deploy the saved model on a fresh cascade first."),
         keep: bool = typer.Option(False, help="Leave the cascade deployed (default: release it afterwards).")
         ) -> None:
    """Test phase (op 3): held-out accuracy through the trained cascade (attached with the session secrets in
    RUN/cascade.json), or a fresh one with --redeploy; the cascade is released afterwards unless --keep."""
    import torch

    from veil.cascade import checkpoint
    from veil.cascade import data as D
    from veil.cascade.designer import Cascade, Designer
    from veil.cascade.models import load_spec

    torch.set_num_threads(1)
    manifest_path = run / "cascade.json"
    if not manifest_path.is_file():
        raise VeilError(f"{manifest_path} not found; run 'veil cascade train --out {run}' first")
    manifest = json.loads(manifest_path.read_text())
    ds = D.load(data, int(manifest.get("seed", 0)), upsample=manifest.get("data") == D.DIGITS28)
    spec = load_spec(manifest["model"], ds.input_dim)
    if redeploy and pool is None:
        raise VeilError("--redeploy needs --pool")
    with Designer(pool or run / "unused-pool.json", spec, dummies=0, keep_loss=manifest.get("keep_loss", False),
                  loop_rate=0, microbatches=int(manifest.get("microbatches", 1)),
                  transport=manifest.get("transport", "zmq"), release_on_close=not keep) as des:
        if redeploy:
            ckpt, _ = checkpoint.read(run / "model.safetensors")
            des.dummies = sum(1 for h in manifest["cascade"] if h["layer"] is None)
            des.setup(ckpt)
        else:
            try:
                des.attach(Cascade.from_description(manifest["cascade"]))
            except VeilError as exc:
                raise VeilError(f"the trained cascade is not reachable ({exc}); use --redeploy --pool") from None
        acc = des.test(ds.x_test, ds.y_test)
    console.print(f"test accuracy {acc:.4f} on {len(ds.x_test)} held-out {ds.name} samples")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


if __name__ == "__main__":
    app()
