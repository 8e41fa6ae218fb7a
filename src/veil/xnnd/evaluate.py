"""Utility of an XNN-d chain: top-1 of the owner's unseen persons, server RecNet on FG features."""

from __future__ import annotations

import torch

from veil.data.faceset import FaceSet
from veil.data.splits import gallery_probe
from veil.metrics import top1
from veil.models.recnet import RecNet
from veil.xnnd.features import generate
from veil.xnnd.generator import FeatureGenerator


@torch.no_grad()
def embed_features(recnet: RecNet, features: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    recnet.eval()
    return torch.cat([recnet(features[i:i + batch_size].float()) for i in range(0, len(features), batch_size)])


def utility(fg: FeatureGenerator, recnet: RecNet, faces: FaceSet, gallery_seed: int = 0, clean: bool = False,
            flip_tta: bool = True, device: torch.device | str = "cpu") -> dict:
    """Gallery (one image per person) vs probes; with ``flip_tta`` the mirror's embedding is added, as in XNN."""
    gallery, probe = gallery_probe(faces, gallery_seed)
    emb = embed_features(recnet, generate(fg, faces.images, clean=clean, device=device))
    if flip_tta:
        emb = emb + embed_features(recnet, generate(fg, faces.images, flip=True, clean=clean, device=device))
    rate, hits = top1(emb[gallery], faces.labels[gallery], emb[probe], faces.labels[probe])
    return {"rate": rate, "hits": hits, "probe_labels": faces.labels[probe], "gallery": len(gallery),
            "chance": 1.0 / len(gallery)}
