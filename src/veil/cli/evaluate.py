"""``veil evaluate`` and ``veil identify``: owner side, ExtNet -> ObfNet(key) -> RecNet."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.data.faceset import load_image_folder, read_images
from veil.data.splits import Split
from veil.device import configure_threads, pick_device
from veil.keys import OwnerKey
from veil.paths import default_data
from veil.pipeline import evaluate as evaluate_step
from veil.pipeline import owner_model


@friendly
def evaluate(split: Path = typer.Option(..., help="Split file."),
             extractor: str = typer.Option("dlib-resnet", help="ExtNet: a name (`veil extractor list`) or a file."),
             recnet: Path = typer.Option(..., help="RecNet returned by the cloud."),
             key: Path = typer.Option(None, help="Owner key (omit for a vanilla RecNet)."),
             group: str = typer.Option("owner_test", help="Split group of held-out persons."),
             data: Path = typer.Option(None), device: str = typer.Option(None)) -> None:
    """Utility: top-1 identification of held-out persons, one gallery image each (cosine)."""
    configure_threads()
    r = evaluate_step(data or default_data(), Split.load(split), extractor, recnet,
                      OwnerKey.load(key) if key else None, group, pick_device(device))
    console.print(f"top-1 identification: {r['rate']}; gallery {r['gallery_size']} persons, "
                  f"chance {100 * r['chance']:.2f}%")


@friendly
def identify(images: list[Path] = typer.Argument(..., help="Probe image files."),
             gallery: Path = typer.Option(..., help="Folder with one sub-folder of images per enrolled person."),
             extractor: str = typer.Option("dlib-resnet", help="ExtNet: a name or a file."),
             recnet: Path = typer.Option(...),
             key: Path = typer.Option(None, help="Owner key (omit for a vanilla RecNet)."),
             device: str = typer.Option(None)) -> None:
    """Name the enrolled person each probe image is most similar to."""
    configure_threads()
    dev = pick_device(device)
    model = owner_model(extractor, recnet, OwnerKey.load(key) if key else None)
    size = model.ext.cfg.img_size
    enrolled = load_image_folder(gallery, size)
    emb = F.normalize(model.embed(enrolled.images, device=dev), dim=1)
    centres = F.normalize(torch.stack([emb[enrolled.labels == i].mean(0) for i in range(len(enrolled.names))]),
                          dim=1)
    probes = read_images(images, size)
    sims = F.normalize(model.embed(probes, device=dev), dim=1) @ centres.T
    table = Table("image", "identity", "cosine")
    for path, row in zip(images, sims, strict=True):
        best = int(row.argmax())
        table.add_row(path.name, enrolled.names[best], f"{float(row[best]):.3f}")
    console.print(table)
