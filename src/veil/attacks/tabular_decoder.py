"""Reconstruction of table rows from a partition's exposed hidden features (seed 002's tabular task).

Threat model as for images (:mod:`veil.attacks.reconstruction`): the adversary runs the untrusted side of
a split detector, so it sees the victims' exposed hidden features; it holds rows of its own and may query
the trusted partition as a black box (row in, hidden features out). It fits a regression decoder (an MLP)
from features back to the raw columns and decodes the victims. Each column is scored beside the *prior*:
the adversary's auxiliary mean (numeric) or most common category (one-hot), what it guesses with no
features; an error near the prior's means the features told it nothing.

:class:`TabularDecoderAttack` is the attack behind the common contract (:mod:`veil.attacks.base`);
``veil.partition.tabular.tabular_experiment`` runs the same :func:`decode` and :func:`feature_errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from veil.attacks import params
from veil.attacks.base import Attack, AttackParameterError, AttackResult, Measure, View
from veil.metrics import Rate

COLUMN_KINDS = ("numeric", "onehot")


class Column(Protocol):
    """One encoded input column of the table's public schema (``veil.partition.tabular.Feature`` is one)."""

    name: str
    column: str
    kind: str  # 'numeric' | 'onehot'


def decode(aux_feats: torch.Tensor, aux_x: torch.Tensor, victim_feats: torch.Tensor, epochs: int,
           seed: int) -> torch.Tensor:
    """Regression decoder (MLP) from exposed features to raw inputs, trained on the adversary's aux rows."""
    torch.manual_seed(seed)
    fm, fs = aux_feats.mean(0), aux_feats.std(0).clamp_min(1e-6)
    xm, xs = aux_x.mean(0), aux_x.std(0).clamp_min(1e-6)
    dec = nn.Sequential(nn.Linear(aux_feats.shape[1], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                        nn.Linear(128, aux_x.shape[1]))
    opt = torch.optim.Adam(dec.parameters(), lr=2e-3)
    f, t = (aux_feats - fm) / fs, (aux_x - xm) / xs
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(f), generator=g)
        for i in range(0, len(order), 256):
            idx = order[i:i + 256]
            loss = F.mse_loss(dec(f[idx]), t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return dec((victim_feats - fm) / fs) * xs + xm


def score(features: Sequence[Column], rec: torch.Tensor, truth: torch.Tensor,
          aux: torch.Tensor) -> tuple[dict, dict[str, Measure]]:
    """Per numeric column RMSE/MAE beside the prior's RMSE, per categorical column accuracy beside the prior's;
    and the same as :class:`Measure` s (absolute error in column units, or accuracy with its Wilson interval).

    The measures need at least one victim row; with none only the first dict is filled.
    """
    errors: dict = {}
    measures: dict[str, Measure] = {}
    prior = aux.mean(0)
    for j, f in enumerate(features):
        if f.kind == "numeric":
            err = rec[:, j] - truth[:, j]
            base = prior[j] - truth[:, j]
            errors[f.name] = {"kind": "numeric", "rmse": float(err.pow(2).mean().sqrt()),
                              "mae": float(err.abs().mean()), "prior_rmse": float(base.pow(2).mean().sqrt()),
                              "std": float(truth[:, j].std())}
            if len(err):
                measures[f.name] = Measure.of("absolute error (column units)", err.abs().numpy(),
                                              float(base.abs().mean()))
    for column in dict.fromkeys(f.column for f in features if f.kind == "onehot"):
        cols = [j for j, f in enumerate(features) if f.column == column]
        guess = rec[:, cols].argmax(1)
        want = truth[:, cols].argmax(1)
        prior_guess = int(aux[:, cols].sum(0).argmax())
        accuracy = Rate(int((guess == want).sum()), len(want))
        prior_accuracy = Rate(int((want == prior_guess).sum()), len(want))
        errors[column] = {"kind": "categorical", "accuracy": accuracy.as_dict(),
                          "prior_accuracy": prior_accuracy.as_dict()}
        if len(want):
            measures[column] = Measure("accuracy (Wilson interval)", accuracy.value, accuracy.interval, accuracy.n,
                                       Measure.of("", (guess == want).double().numpy()).std, prior_accuracy.value)
    return errors, measures


def feature_errors(features: Sequence[Column], rec: torch.Tensor, truth: torch.Tensor, aux: torch.Tensor) -> dict:
    """Per numeric column RMSE/MAE beside the prior's RMSE; per categorical column accuracy beside the prior's."""
    return score(features, rec, truth, aux)[0]


class TabularDecoderAttack(Attack):
    """Decode victims' table rows from their exposed hidden features; score every column against the prior.

    ``features``: the table's public schema, one :class:`Column` per encoded input column, in the
    order of the rows' columns (``TabularData.features``).
    """

    name = "tabular_decoder"
    holdings = ("black-box queries to the trusted partition: row -> exposed features (query)",
                "its own rows of the table (aux_rows)", "the victims' exposed hidden features (exposed)",
                "the table's public schema (features)")
    reports = "row reconstruction: per column absolute error or accuracy, n, 95% CI, prior baseline"

    def __init__(self, features: Sequence[Column], epochs: int = 30, seed: int = 0) -> None:
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence) or not features:
            raise AttackParameterError("features", "features must be a non-empty sequence of columns "
                                                   "(name, column, kind), e.g. TabularData.features")
        for f in features:
            if not all(isinstance(getattr(f, a, None), str) for a in ("name", "column", "kind")) \
                    or f.kind not in COLUMN_KINDS:
                raise AttackParameterError("features", f"features: each needs a name, column and kind in "
                                                       f"{', '.join(COLUMN_KINDS)}, got {f!r}")
        self.features = list(features)
        self.epochs = params.positive_int("epochs", epochs)
        self.seed = params.non_negative_int("seed", seed)

    def run(self, aux_features: torch.Tensor, aux_rows: torch.Tensor, victim_features: torch.Tensor) -> torch.Tensor:
        """The victims' rows as decoded from ``victim_features`` (raw column units)."""
        if aux_rows.ndim != 2 or aux_rows.shape[1] != len(self.features):
            raise ValueError(f"aux_rows must be (n, {len(self.features)}) like the schema, got {tuple(aux_rows.shape)}")
        return decode(aux_features, aux_rows, victim_features, self.epochs, self.seed)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        query, aux, exposed, truth = view.need("query", "aux_rows", "exposed", "truth")
        with torch.no_grad():
            aux_features = _query(query, aux)
        rec = self.run(aux_features, aux, exposed.float())
        errors, measures = score(self.features, rec, truth, aux)
        return self.measured(measures, command, rec, features=errors, epochs=self.epochs,
                             aux_rows=len(aux), exposed_dim=int(exposed.shape[1]),
                             baseline="the adversary's aux mean (numeric) or most common category, no features used")


def _query(query: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    return torch.cat([query(rows[i:i + batch]).float() for i in range(0, len(rows), batch)])


__all__ = ["COLUMN_KINDS", "Column", "TabularDecoderAttack", "decode", "feature_errors", "score"]

