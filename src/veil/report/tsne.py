"""t-SNE of clean (Vanilla+PE store) vs XNN-obfuscated (XNN store) features, like the paper's Figure 6.

Both stores are written by the owner from the same images in the same order, so row i of one is row i
of the other; the anonymous labels differ (XNN's are keyed), but the row alignment lets the report
colour the same person the same way in both panels without touching the key. The check that labels
map one-to-one row by row is what licenses that; if it fails, each panel is coloured by its own labels
and the page says so.

Features are mean-pooled over tokens (the ``pooled`` identifier of the attacks). A few persons with
the most rows, capped per person, keep t-SNE to a few hundred points: seconds on 2 CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from veil.report.plots import PALETTE, to_data_uri
from veil.store import open_store


@dataclass(frozen=True)
class TsneFigure:
    """The figure and the facts its caption states."""

    image: str
    persons: int
    points: int
    aligned: bool
    distance_correlation: float | None
    seconds: float
    perplexity: float


def _pooled(store_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean over tokens, shard by shard, so a large store never sits in memory as full tokens."""
    store = open_store(store_dir)
    feats, labels = [], []
    for f, lab in store.shards():
        feats.append(f.float().mean(dim=1).numpy())
        labels.append(lab.numpy())
    return np.concatenate(feats), np.concatenate(labels)


def _aligned(a: np.ndarray, b: np.ndarray) -> bool:
    """True when labels of the two stores map one-to-one row by row (same images, same order)."""
    if len(a) != len(b):
        return False
    forward: dict[int, int] = {}
    backward: dict[int, int] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


def _pick(labels: np.ndarray, persons: int, per_person: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``persons`` labels with the most rows (ties: smaller label), at most ``per_person`` each."""
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))[:persons]
    rows, colour = [], []
    for rank, i in enumerate(order):
        idx = np.flatnonzero(labels == values[i])
        if len(idx) > per_person:
            idx = np.sort(rng.choice(idx, per_person, replace=False))
        rows.append(idx)
        colour.append(np.full(len(idx), rank))
    return np.concatenate(rows), np.concatenate(colour)


def _embed(x: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """t-SNE on one thread: sklearn's Barnes-Hut gradient spins OpenMP threads, and on cores shared with
    training jobs that turned 0.1 s into 25 s; one thread is fast and leaves the other jobs alone.

    Random (seeded) initialisation, not PCA: t-SNE depends on the data only through pairwise distances,
    so with the same starting layout both panels differ exactly as much as the features' geometry does;
    a PCA start would differ between panels (rotated axes) and add differences that are t-SNE's own."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="random", random_state=seed,
                    n_jobs=1).fit_transform(x)


def _distance_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of pairwise distances: 1.0 means obfuscation kept the geometry exactly."""
    da = torch.pdist(torch.from_numpy(a).double()).numpy()
    db = torch.pdist(torch.from_numpy(b).double()).numpy()
    if len(da) < 2 or da.std() == 0 or db.std() == 0:
        return None
    return float(np.corrcoef(da, db)[0, 1])


MIN_POINTS = 6


def tsne_figure(run_dir: Path, persons: int = 8, per_person: int = 40, seed: int = 0) -> TsneFigure | None:
    """Two t-SNE panels, clean and obfuscated, of the same rows; None when the stores hold too few rows.

    Raises VeilError on a corrupt store (bad manifest, shard checksum), as for any corrupt input.
    """
    start = time.perf_counter()
    clean, clean_labels = _pooled(run_dir / "store_vanilla")
    obf, obf_labels = _pooled(run_dir / "store_xnn")
    rng = np.random.default_rng(seed)
    aligned = _aligned(clean_labels, obf_labels)
    rows_c, col_c = _pick(clean_labels, persons, per_person, rng)
    rows_o, col_o = (rows_c, col_c) if aligned else _pick(obf_labels, persons, per_person, rng)
    xc, xo = clean[rows_c], obf[rows_o]
    n = min(len(xc), len(xo))
    if n < MIN_POINTS:
        return None
    perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
    ec, eo = _embed(xc, perplexity, seed), _embed(xo, perplexity, seed)
    corr = _distance_correlation(xc, xo) if aligned else None

    fig = Figure(figsize=(11.0, 4.8))
    panels = ((ec, col_c, "clean ExtNet features (store_vanilla)"),
              (eo, col_o, "XNN-obfuscated features (store_xnn)"))
    for j, (emb, colour, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, j + 1)
        for rank in range(int(colour.max()) + 1):
            m = colour == rank
            ax.scatter(emb[m, 0], emb[m, 1], s=14, color=PALETTE[rank % len(PALETTE)], alpha=0.8,
                       label=f"person {rank + 1}")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle("t-SNE of mean-pooled tokens, same images, same persons" if aligned else
                 "t-SNE of mean-pooled tokens (stores not row-aligned: colours not comparable)", fontsize=11)
    fig.tight_layout()
    image = to_data_uri(fig)
    return TsneFigure(image, int(col_c.max()) + 1, n, aligned, corr, time.perf_counter() - start, perplexity)
