"""The cascade's data: MNIST from its idx files when a directory is given, else scikit-learn's digits.

The batch order is a pure function of (seed, epoch), so the cascade, the local baseline and a resumed run
after a crash all see the same batches.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from veil.errors import VeilError


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise VeilError(f"{path} is not an idx file (too short)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise VeilError(f"{path}: only unsigned-byte idx files are supported")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise VeilError(f"{path}: idx header says {dims} but the file holds {data.size} values")
    return data.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise VeilError(f"MNIST file {stem}[.gz] not found in {root}")


def load_mnist(root: str | Path, train_limit: int | None = None) -> Dataset:
    """MNIST from the four standard idx files; pixels scaled to [0, 1]."""
    root = Path(root)
    if not root.is_dir():
        raise VeilError(f"MNIST directory {root} not found")
    xs = [_read_idx(_find(root, f"{s}-images-idx3-ubyte")) for s in ("train", "t10k")]
    ys = [_read_idx(_find(root, f"{s}-labels-idx1-ubyte")) for s in ("train", "t10k")]
    x_tr = torch.from_numpy(xs[0].reshape(len(xs[0]), -1).astype(np.float32) / 255.0)
    x_te = torch.from_numpy(xs[1].reshape(len(xs[1]), -1).astype(np.float32) / 255.0)
    y_tr, y_te = torch.from_numpy(ys[0].astype(np.int64)), torch.from_numpy(ys[1].astype(np.int64))
    if train_limit:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    return Dataset("mnist", x_tr, y_tr, x_te, y_te)


DIGITS28 = "digits-28x28 (scikit-learn digits upsampled)"


def load_digits(seed: int = 0, test_fraction: float = 0.2, upsample: bool = False) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), split with ``seed``.

    ``upsample``: bilinear to 28x28 (784 inputs), so the paper's MNIST-shaped MLP (784-128-64-10) runs where
    MNIST itself is not on disk; the data set is then named ``DIGITS28`` in every output, never "mnist"."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise VeilError("scikit-learn is needed for the digits data set (pip install scikit-learn)") from None
    d = sk_digits()
    x = torch.from_numpy(d.data.astype(np.float32) / 16.0)
    if upsample:
        x = torch.nn.functional.interpolate(x.reshape(-1, 1, 8, 8), size=(28, 28), mode="bilinear",
                                            align_corners=False).reshape(-1, 784).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_test = int(round(len(x) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(DIGITS28 if upsample else "digits", x[tr], y[tr], x[te], y[te])


def load(mnist_dir: str | Path | None = None, seed: int = 0, train_limit: int | None = None,
         upsample: bool = False) -> Dataset:
    """MNIST when its directory is given, else digits (upsampled to 28x28 with ``upsample``)."""
    return load_mnist(mnist_dir, train_limit) if mnist_dir else load_digits(seed, upsample=upsample)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: depends only on (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def steps_per_epoch(n: int, batch: int) -> int:
    return (n + batch - 1) // batch


def batch_at(ds: Dataset, batch: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch of global step ``step`` (epoch-major), identical for every trainer."""
    spe = steps_per_epoch(len(ds.x_train), batch)
    epoch, b = divmod(step, spe)
    idx = epoch_order(len(ds.x_train), seed, epoch)[b * batch : (b + 1) * batch]
    return ds.x_train[idx], ds.y_train[idx]
