"""``veil obfuscate``: owner side, images -> ExtNet -> ObfNet(key) -> the store for the cloud."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import console, friendly
from veil.cli.faces import align_option, on_no_face_option, print_alignment
from veil.data.splits import Split
from veil.device import configure_threads, pick_device
from veil.faces.config import face_config
from veil.keys import OwnerKey
from veil.models.registry import DEFAULT_EXTRACTOR
from veil.obfuscation.xnn import MATRIX_KINDS
from veil.paths import default_data
from veil.pipeline import obfuscate as obfuscate_step


@friendly
def obfuscate(split: Path = typer.Option(..., help="Split file."),
              extractor: str = typer.Option(DEFAULT_EXTRACTOR, help="ExtNet: a name (`veil extractor list`) or file."),
              out: Path = typer.Option(..., "--out", "-o", help="Store directory to create."),
              key: Path = typer.Option(None, help="Owner key; omit with --vanilla."),
              vanilla: bool = typer.Option(False, help="No obfuscation (the Vanilla+PE baseline)."),
              method: str = typer.Option(None, help="A registered tokens-level method (`veil methods`); "
                                                    "default: xnn with --key, none with --vanilla."),
              group: str = typer.Option("owner_train", help="Split group to obfuscate."),
              matrix: str = typer.Option("orthogonal", help=f"Mixing matrix: {', '.join(MATRIX_KINDS)}."),
              flips: bool = typer.Option(True, help="Also store mirrored copies (owner-side augmentation)."),
              data: Path = typer.Option(None, help="Dataset (default: LFW)."),
              force: bool = typer.Option(False, help="Replace an existing store."),
              align: str = align_option(), on_no_face: str = on_no_face_option(),
              device: str = typer.Option(None)) -> None:
    """Write obfuscated features + anonymous labels (safetensors shards + manifest): no names, no key."""
    if (key is None) == (not vanilla):
        raise typer.BadParameter("give --key for XNN, or --vanilla for no obfuscation (not both)")
    if vanilla and method not in (None, "none"):
        raise typer.BadParameter(f"--vanilla means no obfuscation; --method {method} needs --key")
    faces = face_config(align, on_no_face)
    configure_threads()
    owner_key = OwnerKey.load(key) if key else None
    stats = obfuscate_step(data or default_data(), Split.load(split), extractor, out, owner_key, group, matrix,
                           flips, force, pick_device(device), method=method, align=faces)
    print_alignment(stats["preprocess"])
    console.print(f"wrote {stats['rows']} rows to {out}; ObfNet took {stats['obfnet_s']:.2f}s vs ExtNet "
                  f"{stats['extnet_s']:.2f}s")

