"""The public extractor used whole (no obfuscation, no cloud): the ceiling an owner's chain is measured against.

dlib's face ResNet is run end to end on the owner's test persons with the same one-gallery-image
protocol as every utility figure (``veil.data.splits.gallery_probe``), so ``teacher_whole`` and the
Vanilla+PE / XNN rows differ only in what the cloud learned.
"""

from __future__ import annotations

from pathlib import Path

import torch

from veil.data.splits import Split, gallery_probe
from veil.faces.config import DEFAULT_FACES, FaceConfig
from veil.metrics import Rate, top1
from veil.models.dlib_resnet import IMAGE_SIZE, load_whole, normalize_rgb
from veil.paths import cache_dir
from veil.pipeline import load_group


@torch.no_grad()
def teacher_whole(data: str | Path, split: Split, device: str | torch.device = "cpu", group: str = "owner_test",
                  batch_size: int = 128, align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """Top-1 of dlib's whole network (128-d descriptors, Euclidean nearest neighbour as dlib uses them), on
    aligned chips by default (``align=None``: whole images resized, as before the face pipeline)."""
    device = torch.device(device)
    net = load_whole(cache_dir()).to(device)
    faces = load_group(data, split, group, IMAGE_SIZE, align)
    emb = torch.cat([net(normalize_rgb(faces.images[i:i + batch_size].to(device))).cpu()
                     for i in range(0, len(faces), batch_size)])
    gallery, probe = gallery_probe(faces, split.gallery_seed)
    dist = torch.cdist(emb[probe], emb[gallery])
    hits = faces.labels[gallery][dist.argmin(dim=1)] == faces.labels[probe]
    cosine, _ = top1(emb[gallery], faces.labels[gallery], emb[probe], faces.labels[probe])
    rate = Rate(int(hits.sum()), len(hits))
    return {**rate.as_dict(), "gallery": len(gallery), "chance": 1.0 / len(gallery), "metric": "euclidean",
            "cosine": cosine.as_dict(), "model": "dlib_face_recognition_resnet_model_v1 (port), whole, no flip",
            "preprocess": faces.preprocess}
