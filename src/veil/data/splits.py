"""Identity-disjoint splits, made once, saved, and reused by every later step and every attack.

Groups:
- ``public``: identities anyone may hold; ExtNet is pre-trained on them.
- ``owner_train``: the owner's private training identities (obfuscated, sent to the cloud).
- ``owner_test``: the owner's held-out persons; gallery (one image each) + probes (the rest).
  Utility and identity leakage are measured on them: persons never seen in training.
- ``aux_a`` / ``aux_b``: two disjoint auxiliary groups an adversary may hold (the paper's
  FaceScrub and IMDb columns).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from veil.data.faceset import FaceSet
from veil.errors import VeilError
from veil.io import write_json

GROUPS = ("public", "owner_train", "owner_test", "aux_a", "aux_b")


@dataclass
class SplitSpec:
    """How many identities (each with at least ``min_images`` images) go to each private group."""

    owner_test: int = 300
    owner_train: int = 400
    aux_a: int = 150
    aux_b: int = 150
    min_images: int = 2
    seed: int = 0


@dataclass
class Split:
    """Identity names per group, plus where they came from."""

    groups: dict[str, list[str]]
    spec: SplitSpec
    dataset: str = ""
    dataset_digest: str = ""
    gallery_seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for group, names in self.groups.items():
            for n in names:
                if n in seen:
                    raise VeilError(f"identity {n!r} is in both {seen[n]} and {group}: splits must be disjoint")
                seen[n] = group

    def save(self, path: str | Path) -> Path:
        body = {"format": "veil-split", "version": 1, "dataset": self.dataset,
                "dataset_digest": self.dataset_digest, "spec": asdict(self.spec),
                "gallery_seed": self.gallery_seed, "groups": self.groups}
        return write_json(path, body, indent=1)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        path = Path(path)
        try:
            body = json.loads(Path(path).read_text())
            if body.get("format") != "veil-split":
                raise ValueError("not a Veil split file")
            return cls(groups=body["groups"], spec=SplitSpec(**body["spec"]), dataset=body.get("dataset", ""),
                       dataset_digest=body.get("dataset_digest", ""), gallery_seed=body.get("gallery_seed", 0))
        except FileNotFoundError:
            raise VeilError(f"split file not found: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise VeilError(f"{path} is not a valid split file ({exc})") from None


def identity_digest(counts: dict[str, int]) -> str:
    """A digest of (identity, image count) pairs, so a split is checked against the data it was made for."""
    h = hashlib.sha256()
    for name in sorted(counts):
        h.update(f"{name}\t{counts[name]}\n".encode())
    return h.hexdigest()[:16]


def make_split(counts: dict[str, int], spec: SplitSpec, dataset: str = "") -> Split:
    """Assign identities to groups at random (seeded); identities with too few images go to ``public``."""
    rich = sorted(n for n, c in counts.items() if c >= spec.min_images)
    poor = sorted(n for n, c in counts.items() if c < spec.min_images)
    need = spec.owner_test + spec.owner_train + spec.aux_a + spec.aux_b
    if need > len(rich):
        raise VeilError(f"split needs {need} identities with >= {spec.min_images} images, the data has "
                        f"{len(rich)}; lower --owner-test/--owner-train/--aux sizes")
    order = np.random.default_rng(spec.seed).permutation(len(rich))
    shuffled = [rich[i] for i in order]
    groups: dict[str, list[str]] = {}
    start = 0
    for group in ("owner_test", "owner_train", "aux_a", "aux_b"):
        k = getattr(spec, group)
        groups[group] = sorted(shuffled[start:start + k])
        start += k
    groups["public"] = sorted(shuffled[start:] + poor)
    return Split(groups=groups, spec=spec, dataset=dataset, dataset_digest=identity_digest(counts),
                 gallery_seed=spec.seed)


def gallery_probe(faces: FaceSet, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of one gallery image per identity (chosen at random, seeded) and of all other images (probes).

    Identities with a single image contribute a gallery entry only: they are distractors.
    """
    g = np.random.default_rng(seed)
    gallery: list[int] = []
    probe: list[int] = []
    labels = faces.labels.numpy()
    for label in range(len(faces.names)):
        idx = np.flatnonzero(labels == label)
        if len(idx) == 0:
            continue
        pick = idx[g.integers(len(idx))]
        gallery.append(int(pick))
        probe.extend(int(i) for i in idx if i != pick)
    return torch.tensor(gallery, dtype=torch.long), torch.tensor(sorted(probe), dtype=torch.long)
