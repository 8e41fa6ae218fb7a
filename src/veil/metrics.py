"""Identification rates with their uncertainty.

Every rate Veil reports carries n and a 95% interval (Wilson score, n = probes). A ratio of two
rates measured on the same probes gets a percentile bootstrap interval, resampling identities
(not images), because images of one person are not independent trials.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Rate:
    """``hits`` successes out of ``n`` trials, with a 95% Wilson interval."""

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)

    def as_dict(self) -> dict:
        lo, hi = self.interval
        return {**asdict(self), "rate": self.value, "ci95": [lo, hi]}

    def __str__(self) -> str:
        lo, hi = self.interval
        return f"{100 * self.value:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] (n={self.n})"


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the ends are exact at 0 and n hits (rounding would otherwise leave the estimate outside its interval)
    return (0.0 if hits == 0 else max(0.0, centre - half), 1.0 if hits == n else min(1.0, centre + half))


@torch.no_grad()
def identify(gallery: torch.Tensor, gallery_labels: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """Label of the most cosine-similar gallery embedding for each probe."""
    sims = F.normalize(probes.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    return gallery_labels[sims.argmax(dim=1)]


def top1(gallery: torch.Tensor, gallery_labels: torch.Tensor, probes: torch.Tensor,
         probe_labels: torch.Tensor) -> tuple[Rate, torch.Tensor]:
    """Top-1 identification rate and the per-probe hit vector (for paired bootstraps)."""
    hits = identify(gallery, gallery_labels, probes) == probe_labels
    return Rate(int(hits.sum()), len(hits)), hits


def pack_hits(hits: torch.Tensor) -> dict:
    """A per-probe hit vector in a few bytes for a JSON file: its length and its bits packed (first probe in the
    high bit of the first byte) and base64-encoded. 1,094 probes take 184 characters, so a result on disk keeps
    what a paired comparison (:func:`bootstrap_ratio`, McNemar) needs, not only the count."""
    bits = np.asarray(hits.detach().cpu(), dtype=bool).reshape(-1)
    return {"length": int(len(bits)), "bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}


def unpack_hits(packed: dict) -> torch.Tensor:
    """The bool vector :func:`pack_hits` wrote; a ``ValueError`` if the record is malformed or its length wrong."""
    try:
        length = int(packed["length"])
        raw = base64.b64decode(str(packed["bits"]), validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"packed hits need 'length' and base64 'bits' ({exc})") from None
    if length < 0 or len(raw) != (length + 7) // 8:
        raise ValueError(f"packed hits: {len(raw)} bytes cannot hold exactly {length} probes")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[length:].any():
        raise ValueError("packed hits: bits set past the stated length")
    return torch.from_numpy(bits[:length].astype(bool))


def bootstrap_ratio(hits_a: torch.Tensor, hits_b: torch.Tensor, groups: torch.Tensor, samples: int = 2000,
                    seed: int = 0) -> dict:
    """Ratio rate(a) / rate(b) with a 95% percentile interval from resampling identities (paired)."""
    a, b, g = hits_a.numpy().astype(float), hits_b.numpy().astype(float), groups.numpy()
    ids, inverse = np.unique(g, return_inverse=True)
    sum_a = np.bincount(inverse, weights=a, minlength=len(ids))
    sum_b = np.bincount(inverse, weights=b, minlength=len(ids))
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(ids), size=(samples, len(ids)))
    num, den = sum_a[draws].sum(axis=1), sum_b[draws].sum(axis=1)
    ratios = np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)
    point = a.sum() / b.sum() if b.sum() else float("nan")
    lo, hi = np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (np.nan, np.nan)
    return {"ratio": float(point), "ci95": [float(lo), float(hi)], "bootstrap": "identities", "samples": samples,
            "identities": int(len(ids))}


def paired_difference(hits_a: torch.Tensor, hits_b: torch.Tensor, groups: torch.Tensor, samples: int = 2000,
                      seed: int = 0) -> dict:
    """rate(a) - rate(b) on the same probes: the probes each one wins alone, McNemar's exact p and a bootstrap.

    Why: two methods scored on the same probes share most of their hits, so their separate Wilson intervals
    overlap even when one is reliably better; the discordant probes (a right and b wrong, or the reverse) carry
    the comparison. ``p_mcnemar`` is the two-sided exact binomial test on them; ``ci95`` the percentile interval
    of the difference resampling identities (``groups``), as :func:`bootstrap_ratio` does.
    """
    a, b, g = hits_a.numpy().astype(float), hits_b.numpy().astype(float), groups.numpy()
    won, lost = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    n = won + lost
    tail = sum(math.comb(n, i) for i in range(min(won, lost) + 1)) / 2 ** n if n else 1.0
    ids, inverse = np.unique(g, return_inverse=True)
    diff_sum = np.bincount(inverse, weights=a - b, minlength=len(ids))
    count = np.bincount(inverse, minlength=len(ids))
    draws = np.random.default_rng(seed).integers(len(ids), size=(samples, len(ids)))
    diffs = diff_sum[draws].sum(axis=1) / count[draws].sum(axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": float(a.mean() - b.mean()), "ci95": [float(lo), float(hi)], "won": won, "lost": lost,
            "p_mcnemar": min(1.0, 2 * tail), "n": len(a), "bootstrap": "identities", "samples": samples}
