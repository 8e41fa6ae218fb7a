"""The face pipeline's options, shared by every command that takes images (``--align``, ``--on-no-face``)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from veil.cli.common import console
from veil.data.faceset import read_images
from veil.faces.bulk import summary_line
from veil.faces.config import ALIGN_CHOICES, ON_NO_FACE, FaceConfig

ALIGN_HELP = (f"Face alignment before the extractor: {', '.join(ALIGN_CHOICES)}. hog/cnn: dlib detector, 5 "
              "landmarks, aligned chip (padding 0.25); none: the whole image resized (data already aligned).")
NO_FACE_HELP = (f"Images with no detected face: {' | '.join(ON_NO_FACE)}. skip: counted, listed and left out; "
                "whole-image: the whole image is taken as the face box (face crops the detector misses).")


def align_option() -> str:
    return typer.Option("hog", "--align", help=ALIGN_HELP)


def on_no_face_option(default: str = "skip") -> str:
    return typer.Option(default, "--on-no-face", help=NO_FACE_HELP)



def print_alignment(preprocess: dict) -> None:
    """A bulk command's one summary line: N images, M without a face (the files are listed in its JSON)."""
    console.print(f"faces: {summary_line(preprocess)}")


def probe_chips(images: list[Path], size: int, faces: FaceConfig | None,
                all_faces: bool) -> tuple[list[tuple[Path, str]], torch.Tensor]:
    """(image, box) rows and their chips (n, 3, size, size): one per image (its largest face), or every face."""
    if faces is None:
        return [(p, "whole image") for p in images], read_images(images, size)
    from veil.faces.pipeline import FacePipeline

    pipeline = FacePipeline(faces)
    rows: list[tuple[Path, str]] = []
    chips = []
    for path in images:
        for found in pipeline.align_file(path, size, all_faces):
            rows.append((path, "whole image" if found.face.whole_image else ", ".join(map(str, found.face.box))))
            chips.append(torch.from_numpy(found.chip).permute(2, 0, 1))
    return rows, torch.stack(chips)
