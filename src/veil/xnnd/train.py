"""Both XNN-d stages from the owner's training images to the three files they produce.

- ``fg.safetensors``: the client's feature generator (ExtNet + secret noise encoder), mode 0600;
  it stays on the client and never goes to the server.
- ``recnet_server.safetensors``: the distilled server RecNet (safe to ship: it reads noised features).
- ``recnet_baseline.safetensors``: the teacher, a RecNet on clean features (Table 4's baseline server).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from veil.data.faceset import FaceSet
from veil.io import write_json
from veil.models.extractor import Extractor, extnet_digest
from veil.models.recnet import save_recnet
from veil.xnnd.config import XnndConfig
from veil.xnnd.distill import distill_server, teacher_logits, train_teacher
from veil.xnnd.features import generate
from veil.xnnd.generator import FeatureGenerator, save_generator
from veil.xnnd.stage1 import train_noise_encoder

FG_FILE = "fg.safetensors"
SERVER_FILE = "recnet_server.safetensors"
BASELINE_FILE = "recnet_baseline.safetensors"


def _with_flips(fg: FeatureGenerator, images: torch.Tensor, clean: bool, device: torch.device) -> torch.Tensor:
    return torch.cat([generate(fg, images, clean=clean, device=device),
                      generate(fg, images, flip=True, clean=clean, device=device)])


def train_xnnd(ext: Extractor, faces: FaceSet, out: str | Path, cfg: XnndConfig | None = None,
               device: torch.device | str = "cpu", show_progress: bool = True, log=print) -> dict:
    """Stage 1 (noise encoder), teacher, stage 2 (distillation); writes the three files into ``out``."""
    cfg = cfg or XnndConfig()
    device = torch.device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    base = FeatureGenerator(ext)
    encoder, h1 = train_noise_encoder(base, faces.images, faces.labels, cfg.adversarial, device, show_progress)
    log(f"stage 1: {h1['seconds']:.0f}s; adversary CE on noised features {h1['adversary_ce'][0]:.2f} -> "
        f"{h1['adversary_ce'][-1]:.2f} (chance {h1['chance_ce']:.2f}), train acc {h1['adversary_acc'][-1]:.3f}")
    fg = FeatureGenerator(ext, encoder)
    labels2 = torch.cat([faces.labels, faces.labels])
    clean = _with_flips(fg, faces.images, True, device)
    teacher, head, ht = train_teacher(clean, labels2, cfg.teacher, device, show_progress)
    log(f"teacher: {ht['seconds']:.0f}s, final loss {ht['loss'][-1]:.3f}")
    logits = teacher_logits(teacher, head, clean)
    del clean
    noised = _with_flips(fg, faces.images, False, device)
    server, hs = distill_server(noised, labels2, logits, cfg.student, device, show_progress)
    log(f"stage 2: {hs['seconds']:.0f}s, final loss {hs['loss'][-1]:.3f}")
    digest = extnet_digest(ext)
    common = {"extractor": {"digest": digest, "img_size": ext.cfg.img_size}, "num_classes": int(faces.labels.max()) + 1,
              "synthetic": faces.synthetic}
    save_generator(fg, out / FG_FILE, {"trained_on_images": len(faces), "synthetic": faces.synthetic})
    save_recnet(server, out / SERVER_FILE, {**common, "xnnd": {"role": "server", "eps": cfg.adversarial.eps}})
    save_recnet(teacher, out / BASELINE_FILE, {**common, "xnnd": {"role": "baseline", "eps": 0.0}})
    history = {"stage1": h1, "teacher": ht, "student": hs, "config": asdict(cfg), "seconds": time.time() - start,
               "files": {"fg": str(out / FG_FILE), "server": str(out / SERVER_FILE),
                         "baseline": str(out / BASELINE_FILE)}}
    write_json(out / "xnnd_history.json", history, indent=1)
    return history
