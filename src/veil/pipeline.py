"""The XNN flow as one function per step: each is one CLI command and one API call.

owner:     split -> key -> (public) pretrain ExtNet -> obfuscate -> [store to cloud]
cloud:     store -> train RecNet -> [recnet.safetensors back to owner]
owner:     recnet + key -> evaluate / identify
"""

from __future__ import annotations

from pathlib import Path

import torch

from veil import io
from veil.data.faceset import FaceSet, count_images, load_npz
from veil.data.loaders import load_faces, preprocess_record, stream_faces
from veil.data.splits import Split, SplitSpec, make_split
from veil.errors import VeilError
from veil.faces.bulk import AlignReport
from veil.faces.config import DEFAULT_FACES, FaceConfig
from veil.keys import OwnerKey
from veil.metrics import bootstrap_ratio
from veil.models.extractor import Extractor, ExtractorConfig, load_extnet, save_backbone
from veil.models.recnet import load_recnet
from veil.obfuscation import registry
from veil.obfuscation.base import Obfuscation
from veil.obfuscation.keyed import label_map
from veil.owner import OwnerModel, evaluate_identification, obfuscate_to_store
from veil.train.pretrain import PretrainConfig, pretrain_backbone


def dataset_counts(data: str | Path) -> dict[str, int]:
    data = Path(data)
    if data.suffix == ".npz":
        return load_npz(data).counts()  # every image counts, as in a folder, whether a face is found or not
    return count_images(data)


def prepare_split(data: str | Path, out: str | Path, spec: SplitSpec | None = None) -> Split:
    """Make and save the identity-disjoint split of ``data``."""
    split = make_split(dataset_counts(data), spec or SplitSpec(), dataset=str(data))
    split.save(out)
    return split


def load_group(data: str | Path, split: Split, group: str, image_size: int,
               align: FaceConfig | None = DEFAULT_FACES) -> FaceSet:
    """The images of one split group, as aligned face chips (``align=None``: resized whole images)."""
    if group not in split.groups:
        raise VeilError(f"split has no group {group!r} (groups: {', '.join(split.groups)})")
    return load_faces(data, image_size, split.groups[group], align)


def pretrain_extractor(data: str | Path, split: Split, out: str | Path, ext_cfg: ExtractorConfig | None = None,
                       cfg: PretrainConfig | None = None, device: str | torch.device = "cpu",
                       show_progress: bool = True, align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """Pre-train on the split's non-owner identities and save the backbone (ExtNet = its first blocks).

    Uses the groups in ``cfg.groups`` (never an owner group), identities with >= ``cfg.min_images`` images.
    """
    ext_cfg = ext_cfg or ExtractorConfig()
    cfg = cfg or PretrainConfig()
    owner = [g for g in cfg.groups if g.startswith("owner")]
    if owner:
        raise VeilError(f"pre-training must not see the owner's identities (groups {owner})")
    counts = dataset_counts(data)
    names = sorted(n for g in cfg.groups for n in split.groups[g] if counts.get(n, 0) >= cfg.min_images)
    faces = load_faces(data, ext_cfg.img_size, names, align)
    backbone, history = pretrain_backbone(faces, ext_cfg, cfg, device, show_progress)
    save_backbone(backbone, ext_cfg, out, extra={"trained_on": list(cfg.groups), "images": len(faces),
                                                  "identities": len(faces.names), "history": history})
    return history


def make_obfuscation(ext: Extractor, key: OwnerKey | None, matrix: str = "orthogonal",
                     method: str | None = None) -> Obfuscation:
    """The owner's transform of ExtNet tokens: ``method`` from the registry (default: XNN under ``key``, or
    no obfuscation when ``key`` is None). Only ``tokens``-level methods fit the store pipeline."""
    spec = registry.get(method or ("xnn" if key is not None else "none"))
    if spec.level != "tokens":
        raise VeilError(f"method {spec.name!r} acts at the {spec.level} level; a store holds obfuscated ExtNet "
                        f"tokens (methods: {', '.join(registry.names('tokens'))}). See `veil bench table2`.")
    options = {"matrix": matrix} if "matrix" in spec.options else {}
    return spec.from_key(key, registry.Geometry.of(ext), **options)


def extractor_module(extractor: str | Path | Extractor) -> Extractor:
    """An ExtNet given as a module (e.g. a :class:`~veil.models.memo.MemoExtNet`), a file or a registry name."""
    return extractor if isinstance(extractor, torch.nn.Module) else load_extnet(extractor)


def obfuscate(data: str | Path, split: Split, extractor: str | Path | Extractor, out: str | Path,
              key: OwnerKey | None,
              group: str = "owner_train", matrix: str = "orthogonal", flip_copies: bool = True,
              overwrite: bool = False, device: str | torch.device = "cpu", show_progress: bool = True,
              batch_size: int = 128, method: str | None = None, align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """Owner: images of ``group`` -> ExtNet -> ObfNet(key) -> store at ``out``.

    ``method`` names a registered tokens-level method (default: ``xnn`` with a key, ``none`` without).
    Labels are the keyed anonymous map when a key is given; without one a public sorted index.
    Images stream in batches of ``batch_size``: the store streams too, so with a CNN ExtNet at 150 px its
    activations for one batch set the memory peak (128 keeps it under 2 GiB). ``align``: the face pipeline
    (None: whole images resized); images without a face are left out and listed in ``stats["preprocess"]``
    (owner-side only: the store never sees file names).
    """
    ext = extractor_module(extractor)
    obf = make_obfuscation(ext, key, matrix, method)
    names = split.groups[group]
    labels = label_map(key, names) if key is not None else {n: i for i, n in enumerate(sorted(names))}
    counts = dataset_counts(data)
    total = sum(counts.get(n, 0) for n in names)
    report = AlignReport()
    batches = stream_faces(data, names, ext.cfg.img_size, batch_size, align, report)
    stats = obfuscate_to_store(ext, obf, batches, names, labels, out, total=total, flip_copies=flip_copies,
                               overwrite=overwrite, device=device, show_progress=show_progress,
                               synthetic=False)
    return {**stats, "preprocess": preprocess_record(data, align, report, ext.cfg.img_size)}


def owner_model(extractor: str | Path | Extractor, recnet: str | Path, key: OwnerKey | None,
                matrix: str | None = None) -> OwnerModel:
    """Assemble ExtNet -> ObfNet(key) -> RecNet, checking the key and ExtNet against RecNet's provenance."""
    ext = extractor_module(extractor)
    rec, info = load_recnet(recnet)
    kind = matrix or ((info.get("obfuscation") or {}).get("matrix")) or "orthogonal"
    return OwnerModel(ext, make_obfuscation(ext, key, kind), rec, info)


def evaluate(data: str | Path, split: Split, extractor: str | Path | Extractor, recnet: str | Path,
             key: OwnerKey | None,
             group: str = "owner_test", device: str | torch.device = "cpu", flip_tta: bool = True,
             align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """Utility of the owner's chain on ``group`` (persons never seen in training)."""
    model = owner_model(extractor, recnet, key)
    faces = load_group(data, split, group, model.ext.cfg.img_size, align)
    return {**evaluate_identification(model, faces, split.gallery_seed, device, flip_tta),
            "preprocess": faces.preprocess}


def compare(results: dict[str, dict], numerator: str, denominator: str) -> dict:
    """Ratio of two methods' utility on the same probes, bootstrap CI over identities."""
    a, b = results[numerator], results[denominator]
    return bootstrap_ratio(a["hits"], b["hits"], a["probe_labels"])


def write_json(path: str | Path, payload: dict) -> Path:
    """Atomically write ``payload`` as JSON (kept here for callers of ``veil.pipeline``; see :mod:`veil.io`)."""
    return io.write_json(path, payload)
