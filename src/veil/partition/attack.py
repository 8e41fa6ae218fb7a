"""The partition's reconstruction attack, kept at its old import path: it lives in :mod:`veil.attacks.reconstruction`.

``veil.partition.planner`` and older callers import ``KINDS``, ``ReconstructionResult``, ``query`` and
``reconstruction_attack`` from here; they are the same objects as in :mod:`veil.attacks.reconstruction`.
"""

from veil.attacks.reconstruction import (
    KINDS,
    Discriminator,
    Generator,
    ReconstructionAttack,
    ReconstructionResult,
    query,
    reconstruction_attack,
)

__all__ = ["KINDS", "Discriminator", "Generator", "ReconstructionAttack", "ReconstructionResult", "query",
           "reconstruction_attack"]
