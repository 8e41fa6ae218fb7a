"""``veil data``: identity-disjoint splits of a face dataset, and aligning a folder of photos once."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.cli.faces import on_no_face_option, print_alignment
from veil.data.splits import SplitSpec
from veil.faces.config import face_config
from veil.paths import default_data
from veil.pipeline import prepare_split

app = typer.Typer(help="Datasets, identity-disjoint splits, face alignment.", no_args_is_help=True)


@app.command("split")
@friendly
def split(data: Path = typer.Option(None, help="Image folder (one sub-folder per identity) or .npz; "
                                               "default: ../shared/data/lfw112 or $VEIL_DATA."),
          out: Path = typer.Option(Path("split.json"), "--out", "-o"),
          owner_test: int = typer.Option(300, help="Owner's held-out persons (gallery + probes)."),
          owner_train: int = typer.Option(400, help="Owner's private training persons."),
          aux: int = typer.Option(150, help="Persons in each of the adversary's two auxiliary groups."),
          min_images: int = typer.Option(2, help="Images a person needs to enter a private group."),
          seed: int = typer.Option(0)) -> None:
    """Assign identities to public / owner_train / owner_test / aux_a / aux_b and save the split."""
    spec = SplitSpec(owner_test=owner_test, owner_train=owner_train, aux_a=aux, aux_b=aux, min_images=min_images,
                     seed=seed)
    s = prepare_split(data or default_data(), out, spec)
    for group, names in s.groups.items():
        console.print(f"{group:12s} {len(names):5d} identities")
    console.print(f"wrote {out}")


@app.command("align")
@friendly
def align(src: Path = typer.Argument(..., help="Folder of images, or of identity sub-folders of images."),
          out: Path = typer.Option(..., "--out", "-o", help="Folder to write the aligned chips to (PNG)."),
          detector: str = typer.Option("hog", "--detector", help="dlib detector: hog (default) or cnn."),
          on_no_face: str = on_no_face_option(),
          size: int = typer.Option(150, help="Chip size in pixels (dlib's face ResNet takes 150)."),
          workers: int = typer.Option(None, help="Worker processes (default: every core)."),
          quiet: bool = typer.Option(False, help="No progress bar.")) -> None:
    """Align a folder once: every face found, as a chip, under OUT with the same relative names (.png).

    OUT gets ``veil-aligned.json`` (the settings, and the images without a face): Veil's loaders then take
    OUT as it is (no second alignment), e.g. ``veil demo --data OUT``.
    """
    from veil.faces.folder import align_folder

    faces = face_config(detector, on_no_face)
    assert faces is not None  # --detector takes hog or cnn only
    record = align_folder(src, out, faces, size, workers, show_progress=not quiet)
    print_alignment(record)
    console.print(f"wrote {record['written']} chips to {out} in {record['seconds']:.1f}s "
                  f"({record['geometry_cached']} from the cache)")
