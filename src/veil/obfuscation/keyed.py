"""Owner side: derive the secret obfuscation parameters and the label map from the owner's key.

Every derivation uses its own HKDF label (which also binds the shape), so the same key gives the
same transform bit for bit, and different purposes never share random bits.
"""

from __future__ import annotations

from collections.abc import Sequence

from veil.keys import OwnerKey
from veil.obfuscation.neuracrypt import NeuraCrypt
from veil.obfuscation.xnn import XNN


def xnn_from_key(key: OwnerKey, tokens: int, dim: int, kind: str = "orthogonal") -> XNN:
    """The owner's ObfNet for an ExtNet with ``tokens`` x ``dim`` output (see :meth:`XNN.from_key`)."""
    return XNN.from_key(key, tokens, dim, kind)


def neuracrypt_from_key(key: OwnerKey, img_size: int, patch: int = 16, dim: int = 256, depth: int = 2) -> NeuraCrypt:
    """The owner's NeuraCrypt encoder (see :meth:`NeuraCrypt.from_key`)."""
    return NeuraCrypt.from_key(key, img_size, patch, dim, depth)


def label_map(key: OwnerKey, names: Sequence[str]) -> dict[str, int]:
    """A secret one-to-one map from identity names to anonymous labels 0..n-1.

    Names are sorted first so the map depends on the set of names, not on the order they were read.
    """
    ordered = sorted(set(names))
    perm = key.rng(f"veil/labels/{len(ordered)}").permutation(len(ordered))
    return {name: int(perm[i]) for i, name in enumerate(ordered)}
