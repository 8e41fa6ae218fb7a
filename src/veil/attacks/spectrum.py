"""Token-spectrum attack: XNN's ``X -> P X M`` (M orthogonal) keeps each sample's singular values; no key, no pair.

The invariant (``docs/attacks.md``, invariant audit): permuting the rows of a sample's (N, D) token matrix and
multiplying every row by one orthogonal M leaves the matrix's singular values unchanged. So the adversary
computes them on its own *clean* gallery photos and on the owner's obfuscated probes, and names each probe by the
nearest gallery spectrum: identification against a clean gallery with no key, no leaked pair, no training.
It measures how much identity lives in a face's spectrum; a map that mixes tokens with channels (XNN-H) or is
not orthogonal (XNN with a Gaussian M) changes the spectrum and defeats it.
"""

from __future__ import annotations

from veil.attacks.base import Attack, AttackResult, View
from veil.attacks.invariants import match_statistics, token_spectrum
from veil.attacks.leakage import LeakageResult, Target


class TokenSpectrumAttack(Attack):
    """Probes (obfuscated tokens) named by the nearest clean gallery face in singular-value space."""

    name = "token_spectrum"
    title = "token spectrum (no key, no pair)"
    label = "token spectrum"
    holdings = ("clean photos of the owner's test persons as gallery (public ExtNet tokens)",
                "the owner's obfuscated test features as probes, token-shaped (target)")

    def on(self, view: View, command: str | None = None) -> AttackResult:
        """``view.target``: gallery rows clean tokens, probe rows obfuscated tokens (``gallery_kind="clean"``)."""
        (target,) = view.need("target")
        return self.result(self.run(target), command, invariant="singular values of each sample's token matrix")

    def run(self, target: Target) -> LeakageResult:
        feats = target.features
        if tuple(feats[target.probe].shape[1:]) != tuple(feats[target.gallery].shape[1:]):
            raise ValueError("the probes must be token-shaped like the gallery")
        return match_statistics(token_spectrum(feats[target.gallery]), target.labels[target.gallery],
                                token_spectrum(feats[target.probe]), target.labels[target.probe])


__all__ = ["TokenSpectrumAttack"]
