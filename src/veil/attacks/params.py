"""Up-front parameter checks shared by every attack.

An attack that runs for minutes and then fails on a typo wastes the user's time, so every attack
checks its parameters in ``__init__`` and raises :class:`~veil.attacks.base.AttackParameterError` (a
``ValueError``) naming the parameter at fault; the CLI reports exactly that error as the user's mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from veil.attacks.base import AttackParameterError


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttackParameterError(name, f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AttackParameterError(name, f"{name} must be a non-negative integer, got {value!r}")
    return value


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AttackParameterError(name, f"{name} must be a positive number, got {value!r}")
    return float(value)


def non_negative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise AttackParameterError(name, f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    options = tuple(options)
    if value not in options:
        raise AttackParameterError(name, f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def recnet_config(value: Any, default: Any) -> Any:
    """The attacker's RecNet recipe: ``default`` when None, else it must be an instance of ``default``'s type."""
    cfg = value if value is not None else default
    if not isinstance(cfg, type(default)):
        raise AttackParameterError("recnet", f"recnet must be an {type(default).__name__}, got {type(value).__name__}")
    return cfg
