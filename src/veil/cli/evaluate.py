"""``veil evaluate`` and ``veil identify``: owner side, ExtNet -> ObfNet(key) -> RecNet."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.cli.faces import align_option, on_no_face_option, print_alignment, probe_chips
from veil.data.loaders import load_image_folder
from veil.data.splits import Split
from veil.device import configure_threads, pick_device
from veil.faces.config import face_config
from veil.keys import OwnerKey
from veil.models.registry import DEFAULT_EXTRACTOR
from veil.paths import default_data
from veil.pipeline import evaluate as evaluate_step
from veil.pipeline import owner_model


@friendly
def evaluate(split: Path = typer.Option(..., help="Split file."),
             extractor: str = typer.Option(DEFAULT_EXTRACTOR, help="ExtNet: a name (`veil extractor list`) or a file."),
             recnet: Path = typer.Option(..., help="RecNet returned by the cloud."),
             key: Path = typer.Option(None, help="Owner key (omit for a vanilla RecNet)."),
             group: str = typer.Option("owner_test", help="Split group of held-out persons."),
             data: Path = typer.Option(None), align: str = align_option(), on_no_face: str = on_no_face_option(),
             device: str = typer.Option(None)) -> None:
    """Utility: top-1 identification of held-out persons, one gallery image each (cosine)."""
    faces = face_config(align, on_no_face)
    configure_threads()
    r = evaluate_step(data or default_data(), Split.load(split), extractor, recnet,
                      OwnerKey.load(key) if key else None, group, pick_device(device), align=faces)
    print_alignment(r["preprocess"])
    console.print(f"top-1 identification: {r['rate']}; gallery {r['gallery_size']} persons, "
                  f"chance {100 * r['chance']:.2f}%")


@friendly
def identify(images: list[Path] = typer.Argument(..., help="Probe image files (photos or face crops)."),
             gallery: Path = typer.Option(..., help="Folder with one sub-folder of images per enrolled person."),
             extractor: str = typer.Option(DEFAULT_EXTRACTOR, help="ExtNet: a name or a file."),
             recnet: Path = typer.Option(...),
             key: Path = typer.Option(None, help="Owner key (omit for a vanilla RecNet)."),
             align: str = align_option(), on_no_face: str = on_no_face_option(),
             all_faces: bool = typer.Option(False, "--all-faces", help="Identify every face in each image (and "
                                            "print its box), not only the largest."),
             device: str = typer.Option(None)) -> None:
    """Name the enrolled person each probe face is most similar to (the largest face of each image)."""
    faces = face_config(align, on_no_face)
    configure_threads()
    dev = pick_device(device)
    model = owner_model(extractor, recnet, OwnerKey.load(key) if key else None)
    size = model.ext.cfg.img_size
    rows, probes = probe_chips(images, size, faces, all_faces)  # a probe without a face fails here, exit 2
    enrolled = load_image_folder(gallery, size, align=faces)
    if enrolled.preprocess.get("without_face"):
        print_alignment(enrolled.preprocess)
    emb = F.normalize(model.embed(enrolled.images, device=dev), dim=1)
    present = [i for i in range(len(enrolled.names)) if bool((enrolled.labels == i).any())]
    centres = F.normalize(torch.stack([emb[enrolled.labels == i].mean(0) for i in present]), dim=1)
    sims = F.normalize(model.embed(probes, device=dev), dim=1) @ centres.T
    table = Table("image", "face box (l, t, r, b)", "identity", "cosine")
    for (path, box), row in zip(rows, sims, strict=True):
        best = int(row.argmax())
        table.add_row(path.name, box, enrolled.names[present[best]], f"{float(row[best]):.3f}")
    console.print(table)

