"""``veil client ...``: run FG (ExtNet + the secret noise encoder) locally, send only noised features."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.cli.faces import align_option, on_no_face_option
from veil.errors import VeilError
from veil.faces.config import face_config

app = typer.Typer(help="Client of the XNN-d recognition server.", no_args_is_help=True)

FG = typer.Option(..., "--fg", help="The client's feature generator (fg.safetensors; secret, stays here).")
SERVER = typer.Option("http://127.0.0.1:8000", "--server", help="Server URL (https:// with TLS).")
TOKEN = typer.Option(None, "--token-file", envvar="VEIL_TOKEN_FILE",
                     help="File holding this client's token (mode 0600; from `veil serve-credentials add`).")
CA = typer.Option(None, "--ca", help="CA certificate (PEM) to verify the server with; a self-signed server "
                  "certificate is its own CA.")


def _client(server: str, token_file: Path | None, ca: Path | None):
    from veil.serve.auth import read_token
    from veil.serve.client import ServiceClient

    return ServiceClient(server, token=read_token(token_file) if token_file else None, ca=ca)


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


def _features(fg_path: Path, files: list[Path], align: str, on_no_face: str):
    """FG features of each image's face chip (aligned here, on the client: the server gets features only).

    An image without a face is a one-line error (exit 2) before anything is sent."""
    from veil.cli.faces import probe_chips
    from veil.xnnd.features import generate
    from veil.xnnd.generator import load_generator

    faces = face_config(align, on_no_face)
    fg, _ = load_generator(fg_path)
    _, images = probe_chips(files, fg.ext.cfg.img_size, faces, all_faces=False)
    return generate(fg, images), generate(fg, images, flip=True)


@app.command("identify")
@friendly
def identify(images: list[Path] = typer.Argument(..., help="Image files or folders."), fg: Path = FG,
             server: str = SERVER, token_file: Path = TOKEN, ca: Path = CA, align: str = align_option(),
             on_no_face: str = on_no_face_option()) -> None:
    """Name each image (its largest face) with the server's nearest enrolled identity."""
    files = _image_files(images)
    feats, flipped = _features(fg, files, align, on_no_face)
    with _client(server, token_file, ca) as client:
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
          server: str = SERVER, token_file: Path = TOKEN, ca: Path = CA, align: str = align_option(),
          on_no_face: str = on_no_face_option()) -> None:
    """Enrol images of one person into the server's gallery (a name another client enrolled needs admin)."""
    files = _image_files(images)
    feats, flipped = _features(fg, files, align, on_no_face)
    with _client(server, token_file, ca) as client:
        r = client.enrol(name, feats, flipped)
    console.print(f"enrolled {len(files)} image(s) as {name!r}; gallery now {r['gallery']}")


@app.command("gallery")
@friendly
def gallery(server: str = SERVER, token_file: Path = TOKEN, ca: Path = CA) -> None:
    """List the enrolled names (needs the admin right)."""
    with _client(server, token_file, ca) as client:
        rows = client.gallery()
    table = Table(title=f"{server}: {len(rows)} name(s)")
    for col in ("name", "entries", "enrolled by"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r["entries"]), str(r["enrolled_by"] or "anonymous"))
    console.print(table)


@app.command("delete")
@friendly
def delete(name: str = typer.Argument(..., help="Enrolled name to remove."), server: str = SERVER,
           token_file: Path = TOKEN, ca: Path = CA) -> None:
    """Remove every entry of a name from the gallery (needs the admin right)."""
    with _client(server, token_file, ca) as client:
        r = client.delete(name)
    console.print(f"deleted {r['deleted']} entr{'y' if r['deleted'] == 1 else 'ies'} of {name!r}; gallery now "
                  f"{r['gallery']}")
