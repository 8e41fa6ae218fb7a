"""One contract for every attack: declared parameters checked up front, one verb, one result schema.

Why (as in the Adversarial Robustness Toolbox): an attack that runs for minutes and then fails on a
typo wastes the user's time, and every consumer (the owner-side harness, ``veil attack``,
``bench/attacks.py``, ``veil report``) should read one result shape rather than one per attack. So:

- each attack is one :class:`Attack` subclass; its ``__init__`` checks every parameter with
  :mod:`veil.attacks.params`, which raises :class:`AttackParameterError` (a ``ValueError``) naming the
  parameter. The CLI reports exactly that error (and ``VeilError``) as the user's mistake; any other
  exception is a bug and keeps its traceback;
- ``holdings`` declares what the adversary holds (never the key: ``veil.attacks`` cannot import it);
- ``on(view)`` runs the attack on a :class:`View` (the tensors the adversary holds) and returns an
  :class:`AttackResult`: rate with n and its 95% interval, chance, holdings, and the command that
  reproduces it. Each attack keeps its typed ``run(...)`` for direct use; ``on`` adapts it.

An attack that reconstructs inputs rather than naming persons (``reconstruction``, ``tabular_decoder``)
has no rate: its result carries :class:`Measure` s instead (a mean over the victims with n, its 95%
interval, and the same measure for the adversary's prior, the counterpart of chance).

Adding an attack is one module under ``veil/attacks/`` with one :class:`Attack` subclass:
:mod:`veil.attacks.registry` finds it by its ``name`` and ``veil attack list`` shows it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from veil.attacks.leakage import LeakageResult, Target


class AttackParameterError(ValueError):
    """A parameter of an attack is out of range or of the wrong kind; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass
class View:
    """What an adversary may hold; each attack reads the fields its ``holdings`` name and checks them.

    ``target``: the owner's obfuscated test features and the gallery/probe protocol. ``aux_tokens`` /
    ``aux_labels``: clean public ExtNet tokens of the adversary's own labelled images. ``pairs``: leaked
    (clean, obfuscated) tokens. ``store_features``: the obfuscated store (the cloud). ``public_tokens``:
    unlabelled public ExtNet tokens. ``recnet``: the cloud's trained RecNet. ``query``: black-box access
    to a feature generator or a trusted partition (inputs -> features), with ``aux_images`` (or, for a
    table, ``aux_rows``) of the adversary's own to send it. ``exposed``: the victims' intermediate
    features as the untrusted side of a partition saw them. ``truth``: the victims' true inputs, used
    only to score a reconstruction (as ``target.labels`` only score an identification), never to fit it.
    """

    target: Target | None = None
    aux_tokens: torch.Tensor | None = None
    aux_labels: torch.Tensor | None = None
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None
    store_features: torch.Tensor | None = None
    public_tokens: torch.Tensor | None = None
    recnet: torch.nn.Module | None = None
    query: Callable[[torch.Tensor], torch.Tensor] | None = None
    aux_images: torch.Tensor | None = None
    aux_rows: torch.Tensor | None = None
    exposed: torch.Tensor | None = None
    truth: torch.Tensor | None = None

    def need(self, *names: str) -> list[Any]:
        """The named holdings, or a ``ValueError`` naming the first one missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"this attack needs {', '.join(missing)} in its view")
        return [getattr(self, n) for n in names]


@dataclass
class Measure:
    """A reconstruction measure over ``n`` victims: its mean with a 95% interval, and the prior's value.

    ``baseline`` is the same measure for what the adversary guesses without the features (its mean
    auxiliary image, its auxiliary rows' mean or most common category): the counterpart of chance.
    """

    what: str
    mean: float
    ci95: tuple[float, float]
    n: int
    std: float
    baseline: float | None = None

    @classmethod
    def of(cls, what: str, values: Any, baseline: float | None = None) -> Measure:
        """Mean of per-victim ``values`` with a normal-approximation 95% interval (NaN below two values).

        Computed in the values' own float precision (SSIM arrays are float32), so the figures equal those
        of :meth:`veil.attacks.reconstruction.ReconstructionResult.summary` to the last digit.
        """
        v = np.asarray(values).reshape(-1)
        if not np.issubdtype(v.dtype, np.floating):
            v = v.astype(np.float64)
        if len(v) == 0:
            raise ValueError(f"{what}: no values to average")
        mean = float(v.mean())
        std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        half = 1.96 * std / math.sqrt(len(v)) if len(v) > 1 else float("nan")
        return cls(what, mean, (mean - half, mean + half), len(v), std, baseline)

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "mean": self.mean, "ci95": list(self.ci95), "n": self.n, "std": self.std,
                "baseline": self.baseline}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measure:
        lo, hi = d["ci95"]
        return cls(str(d["what"]), float(d["mean"]), (float(lo), float(hi)), int(d["n"]), float(d["std"]),
                   None if d.get("baseline") is None else float(d["baseline"]))

    @staticmethod
    def written(value: Any) -> bool:
        """Whether a JSON value is a measure :meth:`as_dict` wrote."""
        return isinstance(value, dict) and {"what", "mean", "ci95", "n", "std"} <= set(value)


LEAKAGE_FIELDS = ("hits", "n", "rate", "ci95", "chance", "gallery", "probe_hits")
HEAD_FIELDS = ("attack", "holdings", "command")


@dataclass
class AttackResult:
    """The one result every consumer reads and writes: ``veil attack --json``, ``bench/attacks.py``, the
    owner-side harness and ``veil report`` all go through :meth:`to_dict` and :meth:`from_dict`.

    On disk: ``attack`` (the registered name), rate, hits, n, ci95, chance, gallery, the per-probe hits packed
    (``probe_hits``, absent in files written before they were kept), ``holdings`` and
    ``command``, then the attack's own ``details`` at the top level (method, curves, estimates, timings).
    A reconstruction attack has no ``leakage`` (no identity to name): it has n and one entry per
    :class:`Measure` (mean, ci95, n, baseline) in place of the rate. ``raw`` (the attack's typed result,
    with tensors) stays in memory.
    """

    attack: str
    leakage: LeakageResult | None
    holdings: tuple[str, ...]
    command: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    raw: Any = None
    measures: dict[str, Measure] = field(default_factory=dict)

    @property
    def rate(self):
        return self.leakage.rate if self.leakage is not None else None

    @property
    def chance(self) -> float | None:
        return self.leakage.chance if self.leakage is not None else None

    @property
    def n(self) -> int:
        if self.leakage is not None:
            return self.leakage.rate.n
        return max((m.n for m in self.measures.values()), default=0)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form (JSON-ready)."""
        head: dict[str, Any] = {}
        if self.leakage is not None:
            head = self.leakage.as_dict()
        elif self.measures:
            head = {"n": self.n, **{k: m.as_dict() for k, m in self.measures.items()}}
        return {"attack": self.attack, **head, "holdings": list(self.holdings), "command": self.command,
                **self.details}

    as_dict = to_dict  # the name every other result type in Veil uses

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackResult:
        """Read back what :meth:`to_dict` wrote (files of other tools too: a missing field is a ``ValueError``)."""
        if not isinstance(d, dict) or not isinstance(d.get("attack"), str):
            raise ValueError("an attack result is a JSON object with an 'attack' name")
        leakage = None
        if all(d.get(k) is not None for k in ("hits", "n", "chance", "gallery")):
            try:
                leakage = LeakageResult.from_dict(d)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"attack result {d['attack']!r}: bad leakage fields ({exc})") from None
        measures = {k: Measure.from_dict(v) for k, v in d.items() if leakage is None and Measure.written(v)}
        derived = set(LEAKAGE_FIELDS) if leakage is not None else {"n"} if measures else set()
        details = {k: v for k, v in d.items() if k not in HEAD_FIELDS and k not in derived and k not in measures}
        return cls(d["attack"], leakage, tuple(d.get("holdings") or ()), d.get("command"), details, None, measures)

    @property
    def method(self) -> str | None:
        """The obfuscation method attacked (``details['method']``), when the result records one."""
        value = self.details.get("method")
        return str(value) if value is not None else None


def _words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")


class Attack(ABC):
    """Base of every attack: ``name``, what the adversary ``holdings`` are, and the uniform verb ``on``.

    ``title`` (the report's name for the attack) and ``label`` (its row label in tables) default to the
    name in words, so an attack that sets neither still shows up everywhere.
    """

    name: ClassVar[str] = "attack"
    title: ClassVar[str] = "attack"
    label: ClassVar[str] = "attack"
    holdings: ClassVar[tuple[str, ...]] = ()
    reports: ClassVar[str] = "top-1 identity leakage: rate, n, 95% CI, chance"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "name" in own:
            if "title" not in own:
                cls.title = _words(cls.name)
            if "label" not in own:
                cls.label = _words(cls.name)

    @abstractmethod
    def on(self, view: View, command: str | None = None) -> AttackResult:
        """Run on what the adversary holds; ``command`` records how to reproduce the run."""

    def result(self, leakage: LeakageResult, command: str | None, raw: Any = None, **details: Any) -> AttackResult:
        """An :class:`AttackResult` of this attack (a helper for ``on``)."""
        return AttackResult(self.name, leakage, self.holdings, command, details, raw)

    def measured(self, measures: dict[str, Measure], command: str | None, raw: Any = None,
                 **details: Any) -> AttackResult:
        """An :class:`AttackResult` of a reconstruction attack: measures in place of a rate."""
        return AttackResult(self.name, None, self.holdings, command, details, raw, measures)


__all__ = ["Attack", "AttackParameterError", "AttackResult", "Measure", "View", "LeakageResult", "Target"]
