"""An identity-labelled image set held in memory as uint8 tensors, and the file-level helpers under its loaders.

The loaders that find and align faces live in :mod:`veil.data.loaders`: this module holds the data type
the attacks and the cloud-facing code share, and so never imports the owner's face pipeline. An image
folder has one sub-folder per identity (LFW, CASIA-WebFace, FaceScrub and VGGFace2 share this layout); an
``.npz`` holds ``images``, ``labels`` and optional ``names``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from veil.errors import VeilError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}


@dataclass
class FaceSet:
    """Images (n, 3, H, W) uint8, integer identity labels, and the identity name of each label.

    ``synthetic`` is carried along so every report made from synthetic data says so.
    """

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    synthetic: bool = False
    source: str = ""
    files: list[str] = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)  # how images became chips (veil.faces), for run JSONs

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise VeilError(f"images must be uint8 (n, 3, H, W), got {tuple(self.images.shape)} "
                            f"{self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise VeilError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and int(self.labels.max()) >= len(self.names):
            raise VeilError(f"label {int(self.labels.max())} has no name ({len(self.names)} names)")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict[str, int]:
        """Images per identity name."""
        c = torch.bincount(self.labels, minlength=len(self.names)).tolist()
        return {n: k for n, k in zip(self.names, c, strict=True) if k > 0}

    def subset(self, identities: Sequence[str]) -> FaceSet:
        """The images of ``identities`` only, relabelled 0..k-1 in the order given."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in identities if n not in index]
        if missing:
            raise VeilError(f"{len(missing)} identities of the split are not in {self.source or 'the data'}"
                            f" (first: {missing[0]!r}); was the split made from another dataset?")
        old_to_new = torch.full((len(self.names),), -1, dtype=torch.long)
        for new, name in enumerate(identities):
            old_to_new[index[name]] = new
        new_labels = old_to_new[self.labels]
        keep = (new_labels >= 0).nonzero().flatten()
        files = [self.files[i] for i in keep.tolist()] if self.files else []
        return FaceSet(self.images[keep], new_labels[keep], list(identities), self.synthetic, self.source, files,
                       self.preprocess)

    def take(self, index: torch.Tensor) -> FaceSet:
        """The rows ``index``, labels and names unchanged."""
        files = [self.files[i] for i in index.tolist()] if self.files else []
        return FaceSet(self.images[index], self.labels[index], self.names, self.synthetic, self.source, files,
                       self.preprocess)


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VeilError(f"cannot read image {path}: {exc}") from None


def read_images(paths: Sequence[Path], size: int, workers: int = 4) -> torch.Tensor:
    """Decode image files to a uint8 (n, 3, size, size) tensor; a bad file raises a VeilError naming it."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: _read_image(Path(p), size), paths))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def load_npz(path: str | Path, image_size: int | None = None) -> FaceSet:
    """Read an ``.npz`` with ``images`` (n,H,W,3 or n,3,H,W uint8), ``labels`` and optional ``names``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
            names = [str(n) for n in z["names"]] if "names" in z.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise VeilError(f"cannot read {path} as an image npz (need 'images' and 'labels'): {exc}") from None
    if images.ndim != 4:
        raise VeilError(f"{path}: images must be 4-D, got shape {images.shape}")
    if images.shape[-1] == 3:
        images = images.transpose(0, 3, 1, 2)
    if images.dtype != np.uint8:
        images = np.clip(images * (255.0 if images.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(images))
    if image_size is not None and t.shape[-1] != image_size:
        t = torch.nn.functional.interpolate(t.float(), size=(image_size, image_size), mode="bicubic",
                                            antialias=True).clamp(0, 255).round().to(torch.uint8)
    uniq, inverse = np.unique(labels, return_inverse=True)
    if names is None:
        names = [f"id{int(u)}" for u in uniq]
    else:
        names = [names[int(u)] if len(names) > int(u) else f"id{int(u)}" for u in uniq]
    return FaceSet(t, torch.from_numpy(inverse.astype(np.int64)), names, source=str(path))


def load_sklearn_lfw(image_size: int = 64, data_home: str | None = None) -> FaceSet:  # pragma: no cover
    """LFW through scikit-learn's fetcher (downloads on first use; needs internet and scikit-learn)."""
    try:
        from sklearn.datasets import fetch_lfw_people
    except ImportError as exc:
        raise VeilError("scikit-learn is not installed: pip install scikit-learn") from exc
    lfw = fetch_lfw_people(color=True, resize=1.0, min_faces_per_person=1, data_home=data_home,
                           slice_=(slice(61, 189), slice(61, 189)))
    images = np.clip(lfw.images * (255.0 if lfw.images.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    t = torch.nn.functional.interpolate(t.float(), size=(image_size, image_size), mode="bicubic",
                                        antialias=True).clamp(0, 255).round().to(torch.uint8)
    return FaceSet(t, torch.from_numpy(lfw.target.astype(np.int64)), [str(n) for n in lfw.target_names],
                   source="sklearn:fetch_lfw_people")


def list_identity_files(root: str | Path, identities: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Image files under ``root/<identity>/`` and their label (index in ``identities``), without decoding."""
    root = Path(root)
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(identities):
        folder = root / name
        if not folder.is_dir():
            raise VeilError(f"identity folder not found: {folder}")
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label)
    return files, labels


def count_images(root: str | Path) -> dict[str, int]:
    """Images per identity sub-folder, from directory listings only (no decoding)."""
    root = Path(root)
    if not root.is_dir():
        raise VeilError(f"dataset folder not found: {root}")
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        n = sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if n:
            out[d.name] = n
    return out
