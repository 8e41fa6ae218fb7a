"""``veil key``: the owner's secret key file."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.keys import OwnerKey

app = typer.Typer(help="Create and inspect the owner's secret key (never sent to the cloud).",
                  no_args_is_help=True)


@app.command("new")
@friendly
def new(out: Path = typer.Option(Path("owner.key"), "--out", "-o", help="Where to write the key (mode 0600)."),
        force: bool = typer.Option(False, help="Replace an existing key file (its stores become useless).")) -> None:
    """Create a key from the OS CSPRNG. Prints its fingerprint, never the secret."""
    key = OwnerKey.generate()
    key.save(out, overwrite=force)
    console.print(f"wrote {out} (mode 0600), fingerprint [bold]{key.fingerprint}[/]")
    typer.echo(key.fingerprint)


@app.command("show")
@friendly
def show(path: Path = typer.Argument(..., help="Key file.")) -> None:
    """Print the key's public fingerprint."""
    typer.echo(OwnerKey.load(path).fingerprint)
