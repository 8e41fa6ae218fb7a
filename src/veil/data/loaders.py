"""The dataset loaders: image files -> aligned face chips (the owner's face pipeline) -> a :class:`FaceSet`.

Every folder loader runs :mod:`veil.faces` by default (dlib HOG detector, 5 landmarks, ``get_face_chip``
at the extractor's input size, padding 0.25), so a photo and a tight crop give the chip dlib's face ResNet
expects; ``align=None`` (``--align none``) keeps the old behaviour, the whole image resized, for data
already aligned some other way. A folder written by ``veil data align`` holds :data:`ALIGNED_MARKER` and is
never aligned twice. Images without a face are left out under the default ``skip`` policy: identities keep
their labels (a person may end up with fewer images, or none), and ``FaceSet.preprocess`` lists them.

Kept apart from :mod:`veil.data.faceset` so the attacks and the cloud side, which share the FaceSet type,
never import the face pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from veil.data.faceset import FaceSet, count_images, list_identity_files, load_npz, read_images
from veil.errors import VeilError
from veil.faces.bulk import AlignReport, FaceAligner
from veil.faces.config import ALIGNED_MARKER, DEFAULT_FACES, FaceConfig


def folder_alignment(root: str | Path, align: FaceConfig | None) -> tuple[FaceConfig | None, dict]:
    """The alignment to run on ``root`` and what to record: none when the folder says it holds chips already."""
    marker = Path(root) / ALIGNED_MARKER
    if align is not None and marker.is_file():
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise VeilError(f"{marker} is unreadable ({exc}); delete it to align this folder again") from None
        return None, {"align": "none (folder already aligned)", "marker": str(marker),
                      "aligned_with": info.get("align", info)}
    if align is None:
        return None, {"align": "none (whole image resized)"}
    return align, {}


def _to_tensor(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).contiguous()


def load_image_folder(root: str | Path, image_size: int = 64, identities: Sequence[str] | None = None,
                      workers: int | None = None, align: FaceConfig | None = DEFAULT_FACES) -> FaceSet:
    """Read ``root/<identity>/<image>`` into memory as ``image_size`` px face chips (or resized, align=None).

    ``identities`` restricts reading to those sub-folders (in that label order), so a step that needs
    one split group never decodes the rest. ``workers``: processes for alignment (default: every core).
    """
    root = Path(root)
    if not root.is_dir():
        raise VeilError(f"dataset folder not found: {root}")
    if identities is None:
        identities = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = list_identity_files(root, identities)
    if not files:
        raise VeilError(f"no images found under {root} (expected one sub-folder per identity)")
    config, preprocess = folder_alignment(root, align)
    if config is None:
        images = read_images(files, image_size, workers or 4)
    else:
        with FaceAligner(config, image_size, workers) as aligner:
            aligned = aligner.align(files)
        images = _to_tensor(aligned.chips)
        files = [files[i] for i in aligned.kept]
        labels = [labels[i] for i in aligned.kept]
        preprocess = preprocess_record(root, align, aligned.report, image_size)
    return FaceSet(images, torch.tensor(labels, dtype=torch.long), list(identities), source=str(root),
                   files=[str(f.relative_to(root)) for f in files], preprocess=preprocess)


def load_faces(path: str | Path, image_size: int = 64, identities: Sequence[str] | None = None,
               align: FaceConfig | None = DEFAULT_FACES) -> FaceSet:
    """Dispatch on the path: a folder of identity sub-folders (aligned), or an ``.npz`` (arrays, used as given)."""
    path = Path(path)
    if path.suffix == ".npz":
        faces = load_npz(path, image_size)
        return faces.subset(identities) if identities is not None else faces
    return load_image_folder(path, image_size, identities, align=align)


def stream_faces(faces_or_root: FaceSet | str | Path, identities: Sequence[str] | None, image_size: int,
                 batch_size: int = 256, align: FaceConfig | None = DEFAULT_FACES,
                 report: AlignReport | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images uint8, labels) batches, decoded and aligned lazily from a folder so memory stays flat.

    ``report``, when given, accumulates what alignment did (images, without a face, ...) for the run's JSON;
    a batch may be shorter than ``batch_size`` by the images left out.
    """
    if isinstance(faces_or_root, FaceSet):
        faces = faces_or_root if identities is None else faces_or_root.subset(identities)
        for i in range(0, len(faces), batch_size):
            yield faces.images[i:i + batch_size], faces.labels[i:i + batch_size]
        return
    root = Path(faces_or_root)
    if root.suffix == ".npz":
        yield from stream_faces(load_npz(root, image_size), identities, image_size, batch_size)
        return
    if identities is None:
        identities = sorted(count_images(root))
    files, labels = list_identity_files(root, identities)
    config, _ = folder_alignment(root, align)
    if config is None:
        for i in range(0, len(files), batch_size):
            yield (read_images(files[i:i + batch_size], image_size),
                   torch.tensor(labels[i:i + batch_size], dtype=torch.long))
        return
    with FaceAligner(config, image_size) as aligner:
        for i in range(0, len(files), batch_size):
            aligned = aligner.align(files[i:i + batch_size])
            if report is not None:
                report.add(aligned.report)
            if aligned.kept:
                yield (_to_tensor(aligned.chips),
                       torch.tensor([labels[i + k] for k in aligned.kept], dtype=torch.long))


def preprocess_record(root: str | Path, align: FaceConfig | None, report: AlignReport | None,
                      image_size: int) -> dict:
    """The run JSON's ``preprocess`` entry for a streamed folder (see :func:`stream_faces`)."""
    config, info = folder_alignment(root, align) if Path(root).suffix != ".npz" else (None, {"align": "none (npz)"})
    if config is None or report is None:
        return info
    return report.as_dict(config, image_size, root)
