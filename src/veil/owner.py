"""Owner side of XNN: obfuscate private images into a store, and assemble ExtNet -> ObfNet -> RecNet.

Only the key holder runs this module. It writes the store that goes to the cloud (no names, no
key) and, once RecNet comes back, embeds and identifies faces with the full private chain.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from veil.data.faceset import FaceSet
from veil.data.splits import gallery_probe
from veil.errors import VeilError
from veil.metrics import top1
from veil.models.extractor import Extractor, extnet_digest
from veil.models.recnet import RecNet
from veil.obfuscation.base import Obfuscation
from veil.store import StoreWriter
from veil.train.progress import progress_bar


def obfuscate_to_store(ext: Extractor, obf: Obfuscation, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                       names: Sequence[str], label_of: dict[str, int], out_dir: str | Path, *,
                       total: int | None = None, flip_copies: bool = True, synthetic: bool = False,
                       shard_size: int = 4096, overwrite: bool = False, device: torch.device | str = "cpu",
                       show_progress: bool = True) -> dict:
    """Run ExtNet then ObfNet over every batch and stream the result into a store.

    ``names[label]`` is the identity of each batch label; ``label_of`` maps it to its anonymous label
    (the keyed map for XNN). Only anonymous labels reach the store. ``flip_copies`` also stores each
    image's mirror, the owner-side augmentation the cloud cannot do on features.
    """
    device = torch.device(device)
    ext = ext.to(device)
    obf = obf.to(device)
    anon = torch.tensor([label_of[n] for n in names], dtype=torch.long)
    info = {"obfuscation": obf.public_info(), "key_fingerprint": obf.key_fingerprint,
            "extractor": {"digest": extnet_digest(ext), "img_size": ext.cfg.img_size},
            "num_classes": len(set(label_of.values())), "flip_copies": flip_copies, "synthetic": synthetic}
    writer = StoreWriter(out_dir, info, shard_size=shard_size, overwrite=overwrite)
    timing = {"extnet_s": 0.0, "obfnet_s": 0.0, "images": 0}
    with writer, progress_bar(show_progress) as bar:  # a failure removes the half-built store, keeps the old one
        task = bar.add_task(f"obfuscate ({obf.method})", total=total, status="")
        for images, labels in batches:
            views = [images, images.flip(-1)] if flip_copies else [images]
            for view in views:
                t0 = time.perf_counter()
                tokens = ext(view.to(device))
                t1 = time.perf_counter()
                hidden = obf(tokens)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                timing["extnet_s"] += t1 - t0
                timing["obfnet_s"] += t2 - t1
                writer.add(hidden, anon[labels])
            timing["images"] += len(images)
            bar.update(task, advance=len(images))
        writer.close()
    return {"rows": writer.count, **timing}


class OwnerModel(nn.Module):
    """ExtNet -> ObfNet -> RecNet: the only chain under which the cloud's RecNet is useful."""

    def __init__(self, ext: Extractor, obf: Obfuscation, recnet: RecNet, recnet_info: dict | None = None) -> None:
        super().__init__()
        info = recnet_info or {}
        expected = info.get("key_fingerprint")
        if expected != obf.key_fingerprint:
            have = obf.key_fingerprint or "no key (vanilla)"
            raise VeilError(f"RecNet was trained on a store made with key {expected or 'none (vanilla)'}, "
                            f"but the key given is {have}: wrong key")
        ext_info = info.get("extractor") or {}
        if ext_info.get("digest") and ext_info["digest"] != extnet_digest(ext):
            raise VeilError("RecNet was trained on features of a different ExtNet (extractor digest differs)")
        if recnet.cfg.in_tokens != ext.token_shape[0] or recnet.cfg.in_dim != ext.token_shape[1]:
            raise VeilError(f"RecNet expects tokens {recnet.cfg.in_tokens}x{recnet.cfg.in_dim}, ExtNet gives "
                            f"{ext.token_shape[0]}x{ext.token_shape[1]}")
        self.ext, self.obf, self.recnet = ext, obf, recnet.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.recnet(self.obf(self.ext(images)))

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 256, flip_tta: bool = True,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """Embeddings of uint8 images; with ``flip_tta`` the embedding of the mirror image is added."""
        self.to(device).eval()
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device)
            e = self(x)
            if flip_tta:
                e = e + self(x.flip(-1))
            out.append(e.cpu())
        return torch.cat(out)


def evaluate_identification(model: OwnerModel, faces: FaceSet, gallery_seed: int = 0,
                            device: torch.device | str = "cpu", flip_tta: bool = True) -> dict:
    """Utility: top-1 identification of probes against a one-image-per-identity gallery."""
    gallery, probe = gallery_probe(faces, gallery_seed)
    if len(probe) == 0:
        raise VeilError("no probe images: every test identity needs at least two images")
    emb = model.embed(faces.images, flip_tta=flip_tta, device=device)
    rate, hits = top1(emb[gallery], faces.labels[gallery], emb[probe], faces.labels[probe])
    return {"rate": rate, "hits": hits, "probe_labels": faces.labels[probe], "gallery_size": len(gallery),
            "chance": 1.0 / len(gallery)}

