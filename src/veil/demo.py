"""The whole XNN flow end to end on a real face dataset: what ``veil demo`` and ``bench/xnn.py`` run.

Each step is the same library call as its CLI command; the run directory holds every artefact
(split, key, extractor, stores, RecNets, results), and the public extractor is cached across runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from veil.bench import environment  # also imported from here by bench scripts
from veil.data.splits import Split
from veil.faces.bulk import summary_line
from veil.faces.config import DEFAULT_FACES, FaceConfig
from veil.keys import OwnerKey
from veil.models.extractor import Extractor, load_extnet
from veil.models.memo import MemoExtNet
from veil.models.recnet import load_recnet
from veil.models.registry import resolve_extractor
from veil.obfuscation import registry
from veil.obfuscation.keyed import xnn_from_key
from veil.owner import OwnerModel, evaluate_identification
from veil.paths import cache_dir, default_data, resolve_data
from veil.pipeline import (
    compare,
    evaluate,
    extractor_module,
    load_group,
    obfuscate,
    prepare_split,
    pretrain_extractor,
    write_json,
)
from veil.presets import PRESETS, Preset
from veil.train.cloud import train_to_file

__all__ = ["PRESETS", "Preset", "run_xnn", "default_data", "cached_extractor", "environment", "run_attacks"]


def run_key(out: Path) -> OwnerKey:
    """The run's owner key: the one saved in the run folder, or a new one saved there (0600)."""
    path = out / "owner.key"
    if path.exists():
        return OwnerKey.load(path)
    key = OwnerKey.generate()
    key.save(path)
    return key


def extractor_cache_path(split: Split, preset: Preset) -> Path:
    """Where the hybrid extractor pre-trained for this split and preset is cached."""
    ident = json.dumps({"split": split.dataset_digest,
                        "identities": sorted(n for g in preset.pretrain.groups for n in split.groups[g]),
                        "ext": asdict(preset.extractor), "pre": asdict(preset.pretrain)}, sort_keys=True)
    return cache_dir() / "extractors" / f"extnet-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.safetensors"


def cached_extractor(data: str | Path, split: Split, preset: Preset, device: str | torch.device = "cpu",
                     show_progress: bool = True, log=print,
                     align: FaceConfig | None = DEFAULT_FACES) -> tuple[Path, dict | None]:
    """The preset's public extractor for this split: from the cache, or pre-trained now and cached.

    Returns the path and the pre-training history (None when it came from the cache or the registry).
    A registered pre-trained extractor (the default, ``dlib-resnet``) needs no training: its weights are
    converted once from the installed package.
    """
    if preset.extractor_name != "hybrid":
        path = resolve_extractor(preset.extractor_name)
        log(f"extractor: {preset.extractor_name} (pre-trained, public) -> {path}")
        return path, None
    ext_path = extractor_cache_path(split, preset)
    if ext_path.exists():
        log(f"extractor: cached {ext_path}")
        return ext_path, None
    history = pretrain_extractor(data, split, ext_path, preset.extractor, preset.pretrain, device, show_progress,
                                 align)
    log(f"extractor: pre-trained on non-owner identities in {history['seconds']:.0f}s -> {ext_path}")
    return ext_path, history


def run_xnn(data: str | Path | None = None, out: str | Path = "runs/demo", preset: str | Preset = "demo",
            device: str | torch.device = "cpu", show_progress: bool = True, log=print, attacks: bool = True,
            ext: Extractor | None = None, align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """Split, key, extractor, obfuscate, cloud-train and evaluate Vanilla+PE and XNN; then the cheap attacks.

    ``ext`` may pass in an already-built ExtNet for the preset's extractor (a benchmark sharing work
    between runs); by default it is loaded and memoised here. ``align``: the face pipeline every image
    goes through (None: whole images resized); what it did is recorded under ``preprocess``.
    """
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
    ext_path, pre_history = cached_extractor(data, split, preset, device, show_progress, log, align)
    ext = ext or MemoExtNet(load_extnet(ext_path))  # each private image through ExtNet once per run, in memory
    timings["pretrain_s"] = time.time() - t

    methods = ((registry.get("none"), None), (registry.get("xnn"), key))
    results: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    preprocess: dict[str, dict] = {}  # what the face pipeline did, per group (the same for both methods)
    for method, mkey in methods:
        name, tag = method.display(), method.folder  # Vanilla+PE: store_vanilla, recnet_vanilla
        t = time.time()
        obf_stats = obfuscate(data, split, ext, out / method.store, mkey, matrix=preset.matrix,
                              overwrite=True, device=device, show_progress=show_progress, align=align)
        timings[f"obfuscate_{tag}_s"] = time.time() - t
        preprocess["owner_train"] = obf_stats.pop("preprocess")
        t = time.time()
        hist = train_to_file(out / method.store, out / method.recnet, preset.cloud,
                             str(device), show_progress)
        timings[f"train_{tag}_s"] = time.time() - t
        results[name] = evaluate(data, split, ext, out / method.recnet, mkey, device=device, align=align)
        preprocess["owner_test"] = results[name].pop("preprocess")
        stats[name] = {"obfuscate": obf_stats, "train": {k: hist[k] for k in ("seconds", "samples_per_second",
                                                                              "rows", "classes")},
                       "final_loss": hist["loss"][-1] if hist["loss"] else None, "fit": hist.get("fit")}
        log(f"{name}: utility {results[name]['rate']}")

    log("faces: " + "; ".join(f"{group}: {summary_line(p)}" for group, p in preprocess.items()))
    wrong = wrong_key_utility(data, split, ext, out / registry.get("xnn").recnet, device, align)
    results["XNN, wrong key"] = wrong
    ratio = compare(results, "XNN", "Vanilla+PE")
    summary: dict[str, Any] = {
        "preset": preset.name, "data": str(data), "synthetic": False, "device": str(device),
        "split": {g: len(v) for g, v in split.groups.items()}, "key_fingerprint": key.fingerprint,
        "extractor": str(ext_path), "extractor_info": extractor_info(ext_path), "preprocess": preprocess,
        "config": {"split": asdict(preset.split), "extractor": asdict(ext.cfg),
                   "pretrain": asdict(preset.pretrain), "cloud": asdict(preset.cloud), "matrix": preset.matrix},
        "utility": {n: {**r["rate"].as_dict(), "gallery": r["gallery_size"], "chance": r["chance"]}
                    for n, r in results.items()},
        "ratio_xnn_over_vanilla": ratio, "stats": stats, "pretrain": pre_history, "timings": timings,
        "environment": environment(device), "wall_seconds": time.time() - wall,
    }
    write_json(out / "results.json", summary)
    if attacks:
        t = time.time()
        summary["attacks"] = run_attacks(out, data, ext, device, log)
        summary["timings"]["attacks_s"] = time.time() - t
        summary["wall_seconds"] = time.time() - wall
        write_json(out / "results.json", summary)
    return summary


def extractor_info(path: str | Path) -> dict:
    """What the run's ExtNet is (name, cut, weights SHA-256, token shape), from its file's public metadata."""
    from veil.io import read_safetensors_metadata

    meta = read_safetensors_metadata(path)
    cfg, extra = json.loads(meta.get("config", "{}")), json.loads(meta.get("extra", "{}"))
    return {"name": extra.get("name", cfg.get("kind", "?")), "kind": cfg.get("kind"), "cut": cfg.get("cut"),
            "img_size": cfg.get("img_size"), "weights_sha256": extra.get("weights_sha256"),
            "token_shape": extra.get("token_shape"), "file": str(path)}


DEMO_KS = (0, 4, 16, 64)
FAST_ESTIMATORS = ("identity", "structured", "profile", "posterior", "bridge")  # no training: seconds on CPU


def run_attacks(out: Path, data: Path, ext, device, log=print) -> dict:
    """The cheap attacks on the run's stores, written where ``veil report`` reads them.

    Two threat models, side by side. Where the key does not matter: pooled cosine on the *owner-keyed*
    gallery (the paper's protocol), key-free and pair-free, on XNN and on Vanilla+PE (the clean reference).
    Where the key matters: the adversary's own *clean* photos as gallery, with k = 0, 4, 16, 64 leaked
    (image, store row) pairs (``LeakedPairsAttack``, the strongest of its training-free estimators at each k:
    structured fit, inner products, the cloud-RecNet bridge). Each rate with its n, interval and chance.
    """
    from veil.evaluation.leakage_harness import LeakageHarness

    harness = LeakageHarness(out, data, device, log=lambda *_: None)
    harness.ext = ext  # the run's memoised ExtNet: no image is extracted twice
    written: dict[str, dict] = {}
    # both key-free identifiers: centred on the target set, and uncentred (a point stronger on dlib's aligned
    # tokens); the verdict is the stronger of the two
    for method, (identifier, suffix, name) in itertools.product(
            ("xnn", "vanilla"), (("pooled", "", "pooled cosine"), ("pooled-uncentred", "_uncentred",
                                                                   "pooled cosine uncentred"))):
        command = f"veil attack known-plaintext --run {out} --method {method} --k 0 --identifier {identifier}"
        r = harness.known_plaintext(method, (0,), identifier, command=command).to_dict()
        path = write_json(out / "attacks" / f"known_plaintext_{method}{suffix}.json", r)
        written[method + suffix.replace("_", ", ")] = {"file": str(path), "points": [
            {"label": f"{name}, owner-keyed gallery, k=0", **{k: p[k] for k in ("k", "rate", "ci95", "n", "chance")}}
            for p in r["points"]]}
    available = len(harness.faces("owner_train"))  # a small run may hold fewer than 64 training images
    ks = tuple(k for k in DEMO_KS if k <= available)
    command = f"veil attack leaked-pairs --run {out} --k {','.join(map(str, ks))}"
    lp = harness.leaked_pairs_attack("xnn", ks, FAST_ESTIMATORS, command=command).to_dict()
    strongest = [p for p in lp["curve"] if p["attack"].startswith("strongest") and p["rate"] is not None]
    lp["identifier"] = "dlib head" if harness.identifier() else "pooled"  # veil report draws the curve's envelope
    path = write_json(out / "attacks" / "leaked_pairs_xnn.json", lp)
    written["xnn, clean gallery"] = {"file": str(path), "points": [
        {"label": f"leaked pairs, clean gallery, k={p['k']} ({p['attack'].split(':')[1]})",
         **{k: p[k] for k in ("k", "rate", "ci95", "n", "chance")}} for p in strongest]}
    for method, r in written.items():
        for p in r["points"]:
            log(f"attack {p['label']} on {method}: leakage {100 * p['rate']:.2f}% "
                f"[{100 * p['ci95'][0]:.2f}, {100 * p['ci95'][1]:.2f}] (n = {p['n']}, chance {100 * p['chance']:.2f}%)")
    return written


def wrong_key_utility(data, split: Split, extractor, recnet_path, device,
                      align: FaceConfig | None = DEFAULT_FACES) -> dict:
    """XNN's RecNet used with a fresh key: what anyone without the owner's key gets from the model."""
    ext = extractor_module(extractor)
    rec, info = load_recnet(recnet_path)
    other = OwnerKey.generate()
    obf = xnn_from_key(other, *ext.token_shape, (info.get("obfuscation") or {}).get("matrix", "orthogonal"))
    model = OwnerModel(ext, obf, rec, {**info, "key_fingerprint": other.fingerprint})
    faces = load_group(data, split, "owner_test", ext.cfg.img_size, align)
    return evaluate_identification(model, faces, split.gallery_seed, device)

