"""TON_IoT-style tabular task: a CSV loader, an MLP attack detector split between enclave and accelerator, and a
reconstruction attack on the exposed hidden features (seed 002's second task; the attack itself, the regression
decoder and its per-column scoring, is :mod:`veil.attacks.tabular_decoder`).

The loader handles the released files as they are: a UTF-8 byte-order mark, padded values (``" high "``),
separate ``date`` and ``time`` columns (parsed together and checked; *not* used as features by default, because
in TON_IoT the attack windows are contiguous in time, so a timestamp feature would let the detector learn the
calendar rather than the telemetry), booleans spelled ``true``/``false`` or ``1``/``0``, categorical readings
(one-hot). The label column is configurable (``label``: normal/attack; ``type``: attack kind); the other label
column is excluded from the features, since it would leak the answer.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from veil.attacks.tabular_decoder import decode, feature_errors
from veil.errors import VeilError
from veil.metrics import Rate
from veil.partition.sequence import LayerSequence
from veil.partition.split import Part

LABEL_COLUMNS = ("label", "type")
BOOLS = {"true": 1.0, "false": 0.0}
TIME_FORMATS = ("%d-%b-%y %H:%M:%S", "%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S")


@dataclass
class Feature:
    """One input column: numeric, or one value of a categorical column (one-hot)."""

    name: str
    column: str
    kind: str  # 'numeric' | 'onehot'
    value: str = ""


@dataclass
class TabularData:
    x: torch.Tensor  # (n, d) float32, encoded but not standardised
    y: torch.Tensor  # (n,) long
    features: list[Feature]
    classes: list[str]
    label: str
    source: str
    timestamps: list[datetime] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


def _parse_time(date: str, clock: str, where: str) -> datetime:
    text = f"{date.strip()} {clock.strip()}"
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise VeilError(f"{where}: cannot parse date/time {text!r} (expected e.g. '25-Apr-19 19:19:40')")


def _number(v: str) -> float | None:
    v = v.strip().lower()
    if v in BOOLS:
        return BOOLS[v]
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def load_csv(paths: str | Path | Sequence[str | Path], label: str = "label", use_time: bool = False,
             exclude: Sequence[str] = ()) -> TabularData:
    """Read one CSV (or several with the same columns) into an encoded feature matrix and labels."""
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not files:
        raise VeilError("no CSV file given")
    header: list[str] | None = None
    rows: list[list[str]] = []
    origin: list[str] = []
    for path in files:
        if not path.is_file():
            raise VeilError(f"CSV file not found: {path}")
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig strips the byte-order mark
                reader = csv.reader(f)
                head = [h.strip() for h in next(reader, [])]
                if not head or not any(head):
                    raise VeilError(f"{path}: empty CSV (no header row)")
                if header is None:
                    header = head
                elif head != header:
                    raise VeilError(f"{path}: columns {head} differ from {files[0]}'s {header}")
                for lineno, row in enumerate(reader, start=2):
                    if not row or all(not c.strip() for c in row):
                        continue
                    if len(row) != len(header):
                        raise VeilError(f"{path}:{lineno}: {len(row)} fields, header has {len(header)}")
                    rows.append([c.strip() for c in row])
                    origin.append(f"{path}:{lineno}")
        except UnicodeDecodeError as exc:
            raise VeilError(f"{path}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise VeilError(f"{path}: malformed CSV ({exc})") from None
    assert header is not None
    if not rows:
        raise VeilError(f"{files[0]}: no data rows")
    if label not in header:
        raise VeilError(f"label column {label!r} not in {files[0]} (columns: {', '.join(header)})")
    col = {h: i for i, h in enumerate(header)}
    stamps: list[datetime] = []
    if "date" in col and "time" in col:
        stamps = [_parse_time(r[col["date"]], r[col["time"]], origin[i]) for i, r in enumerate(rows)]
    skip = {label, "date", "time", *exclude} | {c for c in LABEL_COLUMNS if c in col}
    feats: list[Feature] = []
    blocks: list[np.ndarray] = []
    for name in header:
        if name in skip:
            continue
        values = [r[col[name]] for r in rows]
        nums = [_number(v) for v in values]
        if all(n is not None for n in nums):
            feats.append(Feature(name, name, "numeric"))
            blocks.append(np.asarray(nums, dtype=np.float32)[:, None])
        else:
            vocab = sorted({v.strip().lower() for v in values})
            if len(vocab) > 64:
                bad = next(v for v, n in zip(values, nums, strict=True) if n is None)
                raise VeilError(f"column {name!r} is neither numeric nor a small category set "
                                f"({len(vocab)} distinct values, e.g. {bad!r})")
            idx = {v: i for i, v in enumerate(vocab)}
            onehot = np.zeros((len(values), len(vocab)), dtype=np.float32)
            onehot[np.arange(len(values)), [idx[v.strip().lower()] for v in values]] = 1.0
            feats += [Feature(f"{name}={v}", name, "onehot", v) for v in vocab]
            blocks.append(onehot)
    if use_time and stamps:
        secs = np.asarray([t.hour * 3600 + t.minute * 60 + t.second for t in stamps], dtype=np.float32)
        feats.append(Feature("seconds_of_day", "time", "numeric"))
        blocks.append(secs[:, None])
    if not feats:
        raise VeilError(f"{files[0]}: no feature columns besides the label")
    raw_labels = [r[col[label]].strip().lower() for r in rows]
    classes = sorted(set(raw_labels), key=lambda v: (_number(v) is None, _number(v) or 0.0, v))
    cidx = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([cidx[v] for v in raw_labels], dtype=torch.long)
    return TabularData(torch.from_numpy(np.concatenate(blocks, axis=1)), y, feats, classes, label,
                       ",".join(str(p) for p in files), stamps)


def mlp(d_in: int, n_classes: int, hidden: Sequence[int] = (64, 64, 32)) -> nn.Sequential:
    """The detector: Linear/ReLU stack. Split points are after each ReLU (hidden activations)."""
    layers: list[nn.Module] = []
    d = d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, n_classes))
    return nn.Sequential(*layers)


def mlp_sequence(model: nn.Sequential) -> LayerSequence:
    return LayerSequence([(str(i), m) for i, m in enumerate(model)])


def mlp_splits(model: nn.Sequential) -> list[int]:
    return [i + 1 for i, m in enumerate(model) if isinstance(m, nn.ReLU)]


@dataclass
class TabularRoles:
    """Rows for the owner's training, the adversary's auxiliary queries, and the held-out victim rows."""

    train: torch.Tensor
    aux: torch.Tensor
    test: torch.Tensor


def roles(n: int, seed: int = 0, aux_fraction: float = 0.2, test_fraction: float = 0.2) -> TabularRoles:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, t = int(aux_fraction * n), int(test_fraction * n)
    return TabularRoles(perm[a + t:], perm[:a], perm[a:a + t])


@dataclass
class Standardiser:
    mean: torch.Tensor
    std: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def train_detector(data: TabularData, rows: torch.Tensor, epochs: int = 5, batch: int = 256, seed: int = 0,
                   hidden: Sequence[int] = (64, 64, 32)) -> tuple[nn.Sequential, Standardiser]:
    torch.manual_seed(seed)
    x, y = data.x[rows], data.y[rows]
    std = Standardiser(x.mean(0), x.std(0).clamp_min(1e-6))
    model = mlp(x.shape[1], len(data.classes), hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xs = std(x)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=g)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(xs[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), std


def tabular_experiment(data: TabularData, seed: int = 0, epochs: int = 5, attack_epochs: int = 30,
                       splits: Sequence[int] | None = None) -> dict:
    """Train the detector, check split == unsplit, then per split attack the exposed hidden features.

    Per-feature reconstruction error is reported beside the *prior* baseline (predicting the adversary's aux mean,
    or its most common category): an error near the baseline means the features told the adversary nothing.
    """
    t0 = time.perf_counter()
    r = roles(len(data), seed)
    model, std = train_detector(data, r.train, epochs, seed=seed)
    seq = mlp_sequence(model)
    x_test, y_test = std(data.x[r.test]), data.y[r.test]
    with torch.no_grad():
        full = model(x_test)
    out: dict = {"source": data.source, "label": data.label, "classes": data.classes,
                 "rows": {"train": len(r.train), "aux": len(r.aux), "test": len(r.test)},
                 "features": [f.name for f in data.features], "splits": []}
    for k in splits or mlp_splits(model):
        head, tail = Part(seq, 0, k).eval(), Part(seq, k, len(seq)).eval()
        with torch.no_grad():
            exposed = head(x_test)
            split_logits = tail(exposed)
            aux_feats = head(std(data.x[r.aux]))  # black-box queries by the adversary
        hits = int((split_logits.argmax(1) == y_test).sum())
        rec = decode(aux_feats, data.x[r.aux], exposed, attack_epochs, seed)
        out["splits"].append({
            "split": k, "exposed_dim": int(exposed.shape[1]),
            "detection_accuracy": Rate(hits, len(y_test)).as_dict(),
            "max_abs_diff_vs_unsplit": float((split_logits - full).abs().max()),
            "reconstruction": feature_errors(data.features, rec, data.x[r.test], data.x[r.aux])})
    out["seconds"] = time.perf_counter() - t0
    return out
