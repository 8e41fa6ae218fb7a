"""Attacks that measure what an adversary learns, each holding exactly what that adversary would hold.

Nothing in this package may reach the owner's key module (``tests/test_trust_boundaries.py``):
attacks receive tensors (obfuscated features, public ExtNet tokens, leaked pairs), never a key.
"""

from veil.attacks.alignment import AlignmentAttack, AlignmentResult
from veil.attacks.base import Attack, AttackParameterError, AttackResult, View
from veil.attacks.cloud_model import CloudModelAttack, CloudModelResult
from veil.attacks.expectation import ExpectationAttack, ExpectationResult
from veil.attacks.known_plaintext import KnownPlaintextAttack, KnownPlaintextPoint, KnownPlaintextResult
from veil.attacks.leakage import LeakageResult, Target, identity_leakage
from veil.attacks.recnet_fit import AttackRecNetConfig, extract_tokens

__all__ = ["Attack", "AttackParameterError", "AttackResult", "View",
           "AlignmentAttack", "AlignmentResult", "CloudModelAttack", "CloudModelResult", "ExpectationAttack",
           "ExpectationResult", "KnownPlaintextAttack", "KnownPlaintextPoint", "KnownPlaintextResult", "LeakageResult",
           "Target", "identity_leakage", "AttackRecNetConfig", "extract_tokens"]
