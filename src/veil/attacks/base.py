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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:  # leakage.py defines attacks on this base, so it is imported for types only
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
    to a feature generator (images -> features), with ``aux_images`` to send it.
    """

    target: Target
    aux_tokens: torch.Tensor | None = None
    aux_labels: torch.Tensor | None = None
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None
    store_features: torch.Tensor | None = None
    public_tokens: torch.Tensor | None = None
    recnet: torch.nn.Module | None = None
    query: Callable[[torch.Tensor], torch.Tensor] | None = None
    aux_images: torch.Tensor | None = None

    def need(self, *names: str) -> list[Any]:
        """The named holdings, or a ``ValueError`` naming the first one missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"this attack needs {', '.join(missing)} in its view")
        return [getattr(self, n) for n in names]


@dataclass
class AttackResult:
    """The one schema every consumer reads: ``as_dict()`` has rate, hits, n, ci95, chance, gallery,
    holdings and command, plus the attack's own ``details`` (curves, estimates, timings)."""

    attack: str
    leakage: LeakageResult
    holdings: tuple[str, ...]
    command: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    raw: Any = None

    @property
    def rate(self):
        return self.leakage.rate

    @property
    def chance(self) -> float:
        return self.leakage.chance

    def as_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, **self.leakage.as_dict(), "holdings": list(self.holdings),
                "command": self.command, **self.details}


class Attack(ABC):
    """Base of every attack: ``name``, what the adversary ``holdings`` are, and the uniform verb ``on``."""

    name: ClassVar[str] = "attack"
    holdings: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def on(self, view: View, command: str | None = None) -> AttackResult:
        """Run on what the adversary holds; ``command`` records how to reproduce the run."""

    def result(self, leakage: LeakageResult, command: str | None, raw: Any = None, **details: Any) -> AttackResult:
        """An :class:`AttackResult` of this attack (a helper for ``on``)."""
        return AttackResult(self.name, leakage, self.holdings, command, details, raw)


__all__ = ["Attack", "AttackParameterError", "AttackResult", "View"]
