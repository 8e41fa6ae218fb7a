"""``veil data``: identity-disjoint splits of a face dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.data.splits import SplitSpec
from veil.paths import default_data
from veil.pipeline import prepare_split

app = typer.Typer(help="Datasets and identity-disjoint splits.", no_args_is_help=True)


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
