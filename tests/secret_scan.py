"""Scan a store for every secret derived from the owner's key, and check its manifest against an allow-list.

What the cloud receives must not hold the seed, nor anything derived from it: the permutation P (and
its inverse), the mixing matrix M (every row and every column, in each float dtype a writer could
use, of both matrix kinds), the anonymous label map (its values in name order, and its inverse), or
the HKDF stream keys behind them. Binary forms are searched in every file's bytes; text forms (JSON
lists, comma or space separated) in every file too, so a parameter pasted into ``manifest.json`` is
found as surely as one saved as an extra tensor.

The manifest is checked against an explicit allow-list of fields and types: a new field fails the
test until someone adds it here, after checking it derives nothing from the key.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from veil.keys import OwnerKey
from veil.obfuscation.keyed import label_map, xnn_from_key

INT_DTYPES = ("<i8", ">i8", "<i4", ">i4", "<i2", "<u1")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Every field a store manifest may hold, with its type: anything else is a finding.
MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "version": int, "obfuscation": dict, "key_fingerprint": (str, type(None)),
    "extractor": dict, "num_classes": int, "flip_copies": bool, "synthetic": bool, "tokens": int, "dim": int,
    "dtype": str, "rows": int, "shards": list,
}
OBFUSCATION_FIELDS = {"method": str, "matrix": str}
EXTRACTOR_FIELDS = {"digest": str, "img_size": int}
SHARD_FIELDS = {"file": str, "rows": int, "sha256": str}
SHARD_TENSORS = {"features": "F16", "labels": "I64"}


def _int_forms(name: str, values: Sequence[int]) -> dict[str, bytes]:
    values = [int(v) for v in values]
    forms = {}
    for dt in INT_DTYPES:
        if np.iinfo(np.dtype(dt)).max >= max(values):
            forms[f"{name} as {dt}"] = np.asarray(values, dtype=dt).tobytes()
    for sep in (", ", ",", " "):
        forms[f"{name} as text '{sep}'"] = sep.join(map(str, values)).encode()
    return forms


def _float_forms(name: str, vector: torch.Tensor) -> dict[str, bytes]:
    forms = {}
    for dt in FLOAT_DTYPES:
        raw = vector.to(dt).contiguous()
        forms[f"{name} as {dt}"] = raw.view(torch.uint8).numpy().tobytes() if dt == torch.bfloat16 else \
            raw.numpy().tobytes()
    # JSON text: the first three values, as float32 -> Python float (json.dumps of .tolist()) and as float32 repr
    head = vector[:3].float()
    forms[f"{name} as JSON floats"] = json.dumps(head.tolist())[1:-1].encode()
    forms[f"{name} as float32 repr"] = ", ".join(repr(float(np.float32(v))) for v in head.numpy()).encode()
    return forms


def key_derived_patterns(key: OwnerKey, tokens: int, dim: int, names: Sequence[str]) -> dict[str, bytes]:
    """Every byte pattern that would show a key-derived parameter of an XNN store, by a readable name."""
    patterns: dict[str, bytes] = {
        "seed": key.seed, "seed hex": key.seed.hex().encode(), "seed HEX": key.seed.hex().upper().encode(),
    }
    for label in (f"veil/xnn/permutation/{tokens}", f"veil/xnn/matrix/{dim}", f"veil/labels/{len(set(names))}"):
        patterns[f"stream key {label}"] = key.derive_bytes(label + "#0", 32)
    for kind in ("orthogonal", "gaussian"):
        obf = xnn_from_key(key, tokens, dim, kind)
        for i in range(dim):
            patterns.update(_float_forms(f"M[{i}, :] ({kind})", obf.matrix[i]))
            patterns.update(_float_forms(f"M[:, {i}] ({kind})", obf.matrix[:, i]))
    perm = xnn_from_key(key, tokens, dim).perm.numpy()
    patterns.update(_int_forms("P", perm))
    patterns.update(_int_forms("P inverse", np.argsort(perm)))
    labels = label_map(key, names)
    in_name_order = [labels[n] for n in sorted(labels)]
    patterns.update(_int_forms("label map", in_name_order))
    patterns.update(_int_forms("label map inverse", np.argsort(in_name_order)))
    patterns["label map as JSON"] = json.dumps(labels).encode()
    return patterns


def store_blob(store: Path) -> bytes:
    """Every file's bytes, plus each JSON file re-serialised one-line (so an indented list reads as ``a, b, c``)."""
    parts = []
    for p in sorted(store.iterdir()):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        parts.append(raw)
        if p.suffix == ".json":
            try:
                parts.append(json.dumps(json.loads(raw)).encode())
            except ValueError:
                pass
    return b"\n".join(parts)


def find_secrets(store: Path, patterns: dict[str, bytes]) -> list[str]:
    """Names of the patterns found anywhere in the store's files."""
    blob = store_blob(store)
    return [name for name, pattern in patterns.items() if pattern in blob]


def _check_fields(where: str, obj: dict, allowed: dict) -> list[str]:
    problems = [f"{where}: field {k!r} is not on the allow-list" for k in obj if k not in allowed]
    problems += [f"{where}: field {k!r} is {type(v).__name__}, allowed {allowed[k]}" for k, v in obj.items()
                 if k in allowed and (not isinstance(v, allowed[k]) or (allowed[k] is int and isinstance(v, bool)))]
    return problems


def manifest_problems(manifest: dict) -> list[str]:
    """Every field of ``manifest`` that is not on the allow-list (or has the wrong type)."""
    problems = _check_fields("manifest", manifest, MANIFEST_FIELDS)
    problems += _check_fields("manifest.obfuscation", manifest.get("obfuscation") or {}, OBFUSCATION_FIELDS)
    problems += _check_fields("manifest.extractor", manifest.get("extractor") or {}, EXTRACTOR_FIELDS)
    for i, shard in enumerate(manifest.get("shards") or []):
        problems += _check_fields(f"manifest.shards[{i}]", shard, SHARD_FIELDS)
    return problems


def shard_problems(path: Path) -> list[str]:
    """A shard may hold exactly the tensors ``features`` (float16) and ``labels`` (int64), and no metadata."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    problems = []
    if header.pop("__metadata__", None):
        problems.append(f"{path.name}: safetensors metadata present")
    if {k: v["dtype"] for k, v in header.items()} != SHARD_TENSORS:
        problems.append(f"{path.name}: tensors {sorted((k, v['dtype']) for k, v in header.items())}, "
                        f"allowed {sorted(SHARD_TENSORS.items())}")
    return problems


def store_problems(store: Path, key: OwnerKey, tokens: int, dim: int, names: Sequence[str]) -> list[str]:
    """Everything wrong with ``store`` as something the cloud may receive; empty when it is clean."""
    files = sorted(p.name for p in store.iterdir())
    problems = [f"unexpected file {f}" for f in files if not (f == "manifest.json" or
                                                             (f.startswith("shard-") and f.endswith(".safetensors")))]
    manifest = json.loads((store / "manifest.json").read_text())
    problems += manifest_problems(manifest)
    for shard in sorted(store.glob("shard-*.safetensors")):
        problems += shard_problems(shard)
    problems += [f"key-derived secret found: {n}" for n in find_secrets(store, key_derived_patterns(key, tokens, dim,
                                                                                                      names))]
    blob = store_blob(store)
    problems += [f"identity name found: {n}" for n in names if n.encode() in blob]
    return problems
