"""Token-multiset attack: a per-sample shuffle of tokens keeps their multiset; no key, no pair.

The invariant (``docs/attacks.md``, invariant audit): a permutation of a sample's tokens (XNN's P on its own,
NeuraCrypt's per-sample patch shuffle) leaves every symmetric function of the tokens unchanged: their mean and
per-channel spread here. The adversary computes them on its gallery and on the probes and names each probe by
the nearest gallery statistic. Against NeuraCrypt the shuffle hides nothing its encoder does not already hide:
the statistics of the *encoded* patches match across a shuffle, so this attack reads the encoder's output as
well as an unshuffled one (the encoder itself must be attacked otherwise). Any channel mixing (XNN's M, XNN-H)
changes the statistics and defeats it.
"""

from __future__ import annotations

from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.invariants import match_statistics, token_multiset
from veil.attacks.leakage import LeakageResult, Target


class TokenMultisetAttack(Attack):
    """Probes named by the nearest gallery face in symmetric (order-free) token statistics."""

    name = "token_multiset"
    title = "token multiset (per-sample shuffle)"
    label = "token multiset"
    holdings = ("a gallery of the owner's test persons in the probes' token space (clean tokens when only a "
                "permutation is secret)", "the owner's permuted test features as probes (target)")

    def on(self, view: View, command: str | None = None) -> AttackResult:
        (target,) = view.need("target")
        return self.result(self.run(target), command, invariant="multiset of each sample's tokens")

    def run(self, target: Target) -> LeakageResult:
        feats = target.features
        return match_statistics(token_multiset(feats[target.gallery]), target.labels[target.gallery],
                                token_multiset(feats[target.probe]), target.labels[target.probe])


__all__ = ["TokenMultisetAttack"]
