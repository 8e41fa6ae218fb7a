"""The whole XNN flow end to end on a real face dataset: what ``veil demo`` and ``bench/xnn.py`` run.

Each step is the same library call as its CLI command; the run directory holds every artefact
(split, key, extractor, stores, RecNets, results), and the public extractor is cached across runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from veil.data.splits import Split, SplitSpec
from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.models.extractor import ExtractorConfig, load_extnet
from veil.models.recnet import load_recnet
from veil.obfuscation.keyed import xnn_from_key
from veil.owner import OwnerModel, evaluate_identification
from veil.pipeline import (
    compare,
    evaluate,
    load_group,
    obfuscate,
    prepare_split,
    pretrain_extractor,
    write_json,
)
from veil.train.cloud import CloudTrainConfig, train_to_file
from veil.train.pretrain import PretrainConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lfw112"


@dataclass
class Preset:
    """Sizes of one end-to-end run. ``demo`` fits 10 minutes on 2 CPU cores; ``bench`` is the benchmark."""

    name: str
    split: SplitSpec = field(default_factory=SplitSpec)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    cloud: CloudTrainConfig = field(default_factory=CloudTrainConfig)
    matrix: str = "orthogonal"


PRESETS = {
    "demo": Preset("demo", pretrain=PretrainConfig(epochs=12), cloud=CloudTrainConfig(epochs=20, dim=128)),
    "bench": Preset("bench", pretrain=PretrainConfig(epochs=30), cloud=CloudTrainConfig(epochs=40, dim=128)),
}


def default_data() -> Path:
    return Path(os.environ.get("VEIL_DATA", DEFAULT_DATA))


def resolve_data(data: str | Path | None) -> Path:
    """The dataset to use (the default one when None), checked to exist."""
    data = Path(data) if data else default_data()
    if not data.exists():
        raise VeilError(f"dataset not found: {data} (set VEIL_DATA or pass --data)")
    return data


def run_key(out: Path) -> OwnerKey:
    """The run's owner key: the one saved in the run folder, or a new one saved there (0600)."""
    path = out / "owner.key"
    if path.exists():
        return OwnerKey.load(path)
    key = OwnerKey.generate()
    key.save(path)
    return key


def cache_dir() -> Path:
    return Path(os.environ.get("VEIL_CACHE", Path.home() / ".cache" / "veil"))


def environment(device: torch.device) -> dict:
    import numpy
    import timm

    info = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "device": str(device),
            "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def extractor_cache_path(split: Split, preset: Preset) -> Path:
    ident = json.dumps({"split": split.dataset_digest,
                        "identities": sorted(n for g in preset.pretrain.groups for n in split.groups[g]),
                        "ext": asdict(preset.extractor), "pre": asdict(preset.pretrain)}, sort_keys=True)
    return cache_dir() / "extractors" / f"extnet-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.safetensors"


def cached_extractor(data: str | Path, split: Split, preset: Preset, device: str | torch.device = "cpu",
                     show_progress: bool = True, log=print) -> tuple[Path, dict | None]:
    """The preset's public extractor for this split: from the cache, or pre-trained now and cached.

    Returns the path and the pre-training history (None when it came from the cache).
    """
    ext_path = extractor_cache_path(split, preset)
    if ext_path.exists():
        log(f"extractor: cached {ext_path}")
        return ext_path, None
    history = pretrain_extractor(data, split, ext_path, preset.extractor, preset.pretrain, device, show_progress)
    log(f"extractor: pre-trained on non-owner identities in {history['seconds']:.0f}s -> {ext_path}")
    return ext_path, history


def run_xnn(data: str | Path | None = None, out: str | Path = "runs/demo", preset: str | Preset = "demo",
            device: str | torch.device = "cpu", show_progress: bool = True, log=print) -> dict:
    """Split, key, pretrain (cached), obfuscate, cloud-train and evaluate Vanilla+PE and XNN."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    data = resolve_data(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    wall = time.time()
    timings: dict[str, float] = {}

    t = time.time()
    split = prepare_split(data, out / "split.json", preset.split)
    log(f"split: {', '.join(f'{g} {len(v)}' for g, v in split.groups.items())} identities")
    key = run_key(out)
    log(f"owner key: {out / 'owner.key'} (fingerprint {key.fingerprint})")
    timings["split_key_s"] = time.time() - t

    t = time.time()
    ext_path, pre_history = cached_extractor(data, split, preset, device, show_progress, log)
    timings["pretrain_s"] = time.time() - t

    methods = {"Vanilla+PE": None, "XNN": key}
    results: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    for name, mkey in methods.items():
        tag = name.split("+")[0].lower()
        t = time.time()
        obf_stats = obfuscate(data, split, ext_path, out / f"store_{tag}", mkey, matrix=preset.matrix,
                              overwrite=True, device=device, show_progress=show_progress)
        timings[f"obfuscate_{tag}_s"] = time.time() - t
        t = time.time()
        hist = train_to_file(out / f"store_{tag}", out / f"recnet_{tag}.safetensors", preset.cloud,
                             str(device), show_progress)
        timings[f"train_{tag}_s"] = time.time() - t
        results[name] = evaluate(data, split, ext_path, out / f"recnet_{tag}.safetensors", mkey, device=device)
        stats[name] = {"obfuscate": obf_stats, "train": {k: hist[k] for k in ("seconds", "samples_per_second",
                                                                              "rows", "classes")},
                       "final_loss": hist["loss"][-1]}
        log(f"{name}: utility {results[name]['rate']}")

    wrong = wrong_key_utility(data, split, ext_path, out / "recnet_xnn.safetensors", device)
    results["XNN, wrong key"] = wrong
    ratio = compare(results, "XNN", "Vanilla+PE")
    summary = {
        "preset": preset.name, "data": str(data), "synthetic": False, "device": str(device),
        "split": {g: len(v) for g, v in split.groups.items()}, "key_fingerprint": key.fingerprint,
        "extractor": str(ext_path),
        "config": {"split": asdict(preset.split), "extractor": asdict(preset.extractor),
                   "pretrain": asdict(preset.pretrain), "cloud": asdict(preset.cloud), "matrix": preset.matrix},
        "utility": {n: {**r["rate"].as_dict(), "gallery": r["gallery_size"], "chance": r["chance"]}
                    for n, r in results.items()},
        "ratio_xnn_over_vanilla": ratio, "stats": stats, "pretrain": pre_history, "timings": timings,
        "environment": environment(device), "wall_seconds": time.time() - wall,
    }
    write_json(out / "results.json", summary)
    return summary


def wrong_key_utility(data, split: Split, ext_path, recnet_path, device) -> dict:
    """XNN's RecNet used with a fresh key: what anyone without the owner's key gets from the model."""
    ext = load_extnet(ext_path)
    rec, info = load_recnet(recnet_path)
    other = OwnerKey.generate()
    obf = xnn_from_key(other, *ext.token_shape, (info.get("obfuscation") or {}).get("matrix", "orthogonal"))
    model = OwnerModel(ext, obf, rec, {**info, "key_fingerprint": other.fingerprint})
    faces = load_group(data, split, "owner_test", ext.cfg.img_size)
    return evaluate_identification(model, faces, split.gallery_seed, device)


__all__ = ["PRESETS", "Preset", "run_xnn", "default_data", "cached_extractor", "environment"]
