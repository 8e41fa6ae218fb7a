"""The image sets of a partitioning experiment, identity-disjoint: who trains, who is the victim, who is the adversary.

- ``train`` / ``val``: the *public* identities with at least ``min_class_images`` images, as an identity
  classification task (the network must be trained: attacks on random networks measure nothing useful);
- ``victim``: the owner groups (``owner_test`` + ``owner_train``): the images whose feature maps are exposed;
- ``aux``: the adversary's groups (``aux_a`` + ``aux_b``): other people entirely.
Works on any folder with one sub-folder per class (LFW here; an ImageNet-style train folder too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from veil.data.faceset import FaceSet, count_images
from veil.data.loaders import load_image_folder
from veil.data.splits import SplitSpec, make_split
from veil.errors import VeilError


@dataclass
class ImageData:
    train: FaceSet
    val: FaceSet
    victim: FaceSet
    aux: FaceSet
    source: str
    split: dict


def _take(faces: FaceSet, idx: list[int]) -> FaceSet:
    return faces.take(torch.tensor(idx, dtype=torch.long))


def load_image_data(root: str | Path, image_size: int = 32, seed: int = 0, min_class_images: int = 4,
                    max_per_class: int = 40, victim_ids: int = 200, aux_ids: int = 300,
                    val_fraction: float = 0.2, need_train: bool = True) -> ImageData:
    """Read only the identities each role needs, at ``image_size``; sizes shrink to fit a small folder."""
    root = Path(root)
    counts = count_images(root)
    rich = sum(1 for c in counts.values() if c >= 2)
    if rich < 8:
        raise VeilError(f"{root}: need at least 8 classes with 2+ images for victim/aux/train roles, found {rich}")
    v = min(victim_ids, max(2, int(0.15 * rich)))
    a = min(aux_ids, max(2, int(0.25 * rich)))
    spec = SplitSpec(owner_test=v - v // 2, owner_train=v // 2, aux_a=a - a // 2, aux_b=a // 2, min_images=2,
                     seed=seed)
    split = make_split(counts, spec, dataset=str(root))
    victim_names = split.groups["owner_test"] + split.groups["owner_train"]
    aux_names = split.groups["aux_a"] + split.groups["aux_b"]
    victim = load_image_folder(root, image_size, victim_names)
    aux = load_image_folder(root, image_size, aux_names)
    classes = [n for n in split.groups["public"] if counts[n] >= min_class_images]
    if need_train and len(classes) < 2:
        raise VeilError(f"{root}: fewer than 2 public classes with >= {min_class_images} images to train on")
    if need_train:
        faces = load_image_folder(root, image_size, classes)
        rng = np.random.default_rng(seed)
        tr, va = [], []
        labels = faces.labels.numpy()
        for c in range(len(classes)):
            idx = rng.permutation(np.flatnonzero(labels == c))[:max_per_class]
            k = max(1, int(round(val_fraction * len(idx))))
            va += idx[:k].tolist()
            tr += idx[k:].tolist()
        train, val = _take(faces, sorted(tr)), _take(faces, sorted(va))
    else:
        train = val = FaceSet(torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8),
                              torch.zeros(0, dtype=torch.long), [])
    desc = {"victim_identities": len(victim_names), "aux_identities": len(aux_names),
            "train_classes": len(classes) if need_train else 0, "victim_images": len(victim),
            "aux_images": len(aux), "train_images": len(train), "val_images": len(val), "seed": seed,
            "identity_disjoint": True, "split_digest": split.dataset_digest}
    return ImageData(train, val, victim, aux, str(root), desc)
