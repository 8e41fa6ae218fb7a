"""The dataset loaders: image files -> aligned face chips (the owner's face pipeline) -> a :class:`FaceSet`.

Every folder loader runs :mod:`veil.faces` by default (dlib HOG detector, 5 landmarks, ``get_face_chip``
at the extractor's input size, padding 0.25), so a photo and a tight crop give the chip dlib's face ResNet
expects; ``align=None`` (``--align none``) keeps the old behaviour, the whole image resized, for data
already aligned some other way. A folder written by ``veil data align`` holds :data:`ALIGNED_MARKER` and is
never aligned twice. An ``.npz`` dataset is aligned the same way, in memory (one process, no geometry cache),
unless it holds an ``aligned`` entry (its images are chips already) or ``align=None``. Images without a face
are left out under the default ``skip`` policy: identities keep their labels (a person may end up with fewer
images, or none), and ``FaceSet.preprocess`` lists them.

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
from veil.faces.bulk import AlignReport, FaceAligner, align_arrays
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


NPZ_ALIGNED = "aligned"  # an .npz entry saying its images are face chips already (the folder marker's counterpart)


def npz_alignment(path: str | Path, align: FaceConfig | None) -> tuple[FaceConfig | None, dict]:
    """As :func:`folder_alignment`, for an ``.npz``: none when it says it holds chips (an ``aligned`` entry)."""
    if align is None:
        return None, {"align": "none (npz, whole image resized)"}
    try:
        with np.load(path, allow_pickle=False) as z:
            marked = NPZ_ALIGNED in z.files
    except (OSError, ValueError) as exc:
        raise VeilError(f"cannot read {path} as an image npz: {exc}") from None
    if marked:
        return None, {"align": "none (npz holds aligned chips)"}
    return align, {}


def load_npz_faces(path: str | Path, image_size: int, identities: Sequence[str] | None = None,
                   align: FaceConfig | None = DEFAULT_FACES, report: AlignReport | None = None) -> FaceSet:
    """An ``.npz`` dataset as ``image_size`` px chips: its images aligned in memory (detected at their own
    resolution), or resized as given when it holds chips already or ``align`` is None."""
    config, preprocess = npz_alignment(path, align)
    if config is None:
        faces = load_npz(path, image_size)
        faces = faces.subset(identities) if identities is not None else faces
        faces.preprocess = preprocess
        return faces
    faces = load_npz(path)
    faces = faces.subset(identities) if identities is not None else faces
    aligned = align_arrays(faces.images.permute(0, 2, 3, 1).numpy(), config, image_size)
    if report is not None:
        report.add(aligned.report)
    keep = torch.tensor(aligned.kept, dtype=torch.long)
    return FaceSet(_to_tensor(aligned.chips), faces.labels[keep], faces.names, faces.synthetic, str(path),
                   preprocess=aligned.report.as_dict(config, image_size))


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
    """Dispatch on the path: a folder of identity sub-folders or an ``.npz`` of arrays, both aligned by ``align``."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_npz_faces(path, image_size, identities, align)
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
        yield from stream_faces(load_npz_faces(root, image_size, identities, align, report), None, image_size,
                                batch_size)
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
    config, info = npz_alignment(root, align) if Path(root).suffix == ".npz" else folder_alignment(root, align)
    if config is None or report is None:
        return info
    return report.as_dict(config, image_size, root)
