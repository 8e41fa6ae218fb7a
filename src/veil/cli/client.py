"""``veil client ...``: run FG (ExtNet + the secret noise encoder) locally, send only noised features."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError

app = typer.Typer(help="Client of the XNN-d recognition server.", no_args_is_help=True)

FG = typer.Option(..., "--fg", help="The client's feature generator (fg.safetensors; secret, stays here).")
SERVER = typer.Option("http://127.0.0.1:8000", "--server", help="Server URL.")


def _image_files(paths: list[Path]) -> list[Path]:
    from veil.data.faceset import IMAGE_SUFFIXES

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise VeilError(f"image not found: {p}")
    if not files:
        raise VeilError("no images given")
    return files


def _features(fg_path: Path, files: list[Path]):
    from veil.data.faceset import read_images
    from veil.xnnd.features import generate
    from veil.xnnd.generator import load_generator

    fg, _ = load_generator(fg_path)
    images = read_images(files, fg.ext.cfg.img_size)
    return generate(fg, images), generate(fg, images, flip=True)


@app.command("identify")
@friendly
def identify(images: list[Path] = typer.Argument(..., help="Image files or folders."), fg: Path = FG,
             server: str = SERVER) -> None:
    """Name each image with the server's nearest enrolled identity."""
    from veil.serve.client import ServiceClient

    files = _image_files(images)
    feats, flipped = _features(fg, files)
    with ServiceClient(server) as client:
        results = client.identify(feats, flipped)
    table = Table(title=f"{server}: {len(files)} image(s)")
    for col in ("image", "identity", "cosine"):
        table.add_column(col)
    for f, r in zip(files, results, strict=True):
        table.add_row(str(f), r["name"] or "(empty gallery)", "" if r["score"] is None else f"{r['score']:.3f}")
    console.print(table)
    for f, r in zip(files, results, strict=True):
        typer.echo(f"{f}\t{r['name']}\t{r['score']}")


@app.command("enrol")
@friendly
def enrol(images: list[Path] = typer.Argument(..., help="Image files or folders of ONE person."),
          name: str = typer.Option(..., help="Identity to enrol them under."), fg: Path = FG,
          server: str = SERVER) -> None:
    """Enrol images of one person into the server's gallery."""
    from veil.serve.client import ServiceClient

    files = _image_files(images)
    feats, flipped = _features(fg, files)
    with ServiceClient(server) as client:
        r = client.enrol(name, feats, flipped)
    console.print(f"enrolled {len(files)} image(s) as {name!r}; gallery now {r['gallery']}")
