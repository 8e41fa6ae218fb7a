"""A SYNTHETIC run directory for the report tests: the real file formats, made-up numbers, tiny stores.

The JSON files copy the structure of ``runs/bench-xnn`` (results.json, attacks/*.json) and the
schema of the lead's ``bench/table2.py`` (table2.json); every value is invented and the files say
``"synthetic": true``. The stores hold random tokens: the XNN store is the vanilla one under a random
token permutation and orthogonal matrix with relabelled classes, row for row, as ``veil obfuscate``
writes them. ``owner.key`` is a fake holding ``SECRET``, which must never reach the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from veil.metrics import Rate
from veil.store import StoreWriter

SECRET = "SYNTHETIC-SECRET-0f9e8d7c6b5a4938271605f4e3d2c1b0"
FINGERPRINT = "feedfacecafebeef"
N, GALLERY = 200, 20
CHANCE = 1 / GALLERY


def rate(hits: int, n: int = N) -> dict:
    return {**Rate(hits, n).as_dict(), "gallery": GALLERY, "chance": CHANCE}


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def results() -> dict:
    return {
        "preset": "test", "data": "SYNTHETIC", "synthetic": True, "device": "cpu",
        "split": {"owner_test": 20, "owner_train": 8, "aux_a": 5, "aux_b": 5, "public": 10},
        "key_fingerprint": FINGERPRINT,
        "config": {"split": {"seed": 0}, "cloud": {"epochs": 1, "seed": 0}, "matrix": "orthogonal"},
        "utility": {"Vanilla+PE": rate(80), "XNN": rate(76), "XNN, wrong key": rate(70)},
        "ratio_xnn_over_vanilla": {"ratio": 0.95, "ci95": [0.8, 1.1], "bootstrap": "identities", "samples": 200,
                                   "identities": GALLERY},
        "timings": {"pretrain_s": 1.5, "train_xnn_s": 2.5},
        "environment": {"python": "3.x", "torch": "SYNTHETIC", "device": "cpu", "cpu_threads": 2},
        "wall_seconds": 12.0,
    }


def attacks() -> dict[str, dict]:
    util = rate(76)
    kp_points = [{"k": k, **rate(h), "residual": float("nan") if k == 0 else 1e-5, "permutation_accuracy":
                  0.0 if k == 0 else 1.0, "matrix_rel_error": e} for k, h, e in
                 ((0, 30, 1.4), (1, 34, 1.3), (4, 60, 0.9), (16, 74, 0.003))]
    return {
        "expectation_xnn_aux_a.json": {"attack": "expectation", "method": "xnn", "aux": "aux_a", **rate(3),
                                       "seconds": 1.0, "config": {"seed": 0}, "utility": util},
        "expectation_xnn_aux_b.json": {"attack": "expectation", "method": "xnn", "aux": "aux_b", **rate(5),
                                       "seconds": 1.0, "config": {"seed": 0}, "utility": util},
        "expectation_xnn_aux_a_clean_gallery.json": {"attack": "expectation", "method": "xnn", "aux": "aux_a",
                                                     "gallery_kind": "clean", **rate(2), "seconds": 1.0,
                                                     "config": {"seed": 0}, "utility": util},
        "known_plaintext_xnn_pooled.json": {"attack": "known_plaintext", "method": "xnn", "identifier": "pooled",
                                            "points": kp_points, "seconds": 2.0,
                                            "config": {"ks": [0, 1, 4, 16]}, "utility": util},
        "alignment_xnn_aux_a.json": {"attack": "alignment", "method": "xnn", "aux": "aux_a", "public": "aux_a",
                                     "public_rows": 50, "identifier": "pooled", **rate(40),
                                     "whitened_pooled": rate(66), "seconds": 1.5, "utility": util},
        "cloud_xnn.json": {"attack": "cloud_model", "method": "xnn", **rate(76), "utility": util},
    }


def table2() -> dict:
    """SYNTHETIC table2.json in the lead's schema (bench/table2.py); numbers are invented."""
    rows = []
    for method, u, a, b in (("Vanilla+PE", 80, 78, 75), ("IH(k=2)", 40, 30, 28), ("IH(k=3)", 30, 20, 18),
                            ("NC", 50, 25, 22), ("XNN", 76, 3, 5)):
        rows.append({"method": method, "utility": rate(u), "leakage": {"aux_a": rate(a), "aux_b": rate(b)},
                     "chance": CHANCE})
    ablations = [{"name": name, "pretrained_extnet": pe, "obfnet": ob, "frozen_recnet": fr, "utility": rate(u)}
                 for name, pe, ob, fr, u in (("Vanilla", False, False, False, 30), ("+PE", True, False, False, 80),
                                             ("XNN", True, True, False, 76), ("frozen RecNet", True, True, True, 10))]
    return {"rows": rows, "ablations": ablations, "environment": {"python": "3.x", "device": "cpu"}, "seed": 0,
            "wall_seconds": 3.0, "synthetic": True}


def stores(run: Path, persons: int = 8, per_person: int = 6, tokens: int = 4, dim: int = 16) -> None:
    """Vanilla store and the same rows obfuscated (permutation + orthogonal matrix, relabelled)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(persons, tokens, dim, generator=g) * 3
    labels = torch.arange(persons).repeat_interleave(per_person)
    clean = centres[labels] + torch.randn(len(labels), tokens, dim, generator=g)
    perm = torch.randperm(tokens, generator=g)
    m, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    relabel = torch.randperm(persons, generator=g)
    info = {"num_classes": persons, "flip_copies": False, "synthetic": True}
    for name, feats, labs in (("store_vanilla", clean, labels), ("store_xnn", clean[:, perm] @ m, relabel[labels])):
        writer = StoreWriter(run / name, {**info, "obfuscation": {"method": name.split("_")[1]}}, shard_size=20)
        writer.add(feats, labs)
        writer.close()


def make_run(run: Path, with_table2: bool = True, with_stores: bool = True) -> Path:
    """Write the whole SYNTHETIC run directory into ``run`` and return it."""
    run.mkdir(parents=True, exist_ok=True)
    _write(run / "results.json", results())
    for name, payload in attacks().items():
        _write(run / "attacks" / name, payload)
    if with_table2:
        _write(run / "table2.json", table2())
    if with_stores:
        stores(run)
    (run / "owner.key").write_text(SECRET + "\n")
    return run
