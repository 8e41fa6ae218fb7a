"""Inner-product attack: an orthogonal map keeps inner products, so k leaked pairs locate every probe.

The invariant (``docs/attacks.md``, invariant audit): XNN with an orthogonal M and XNN-H without its curve
apply one orthogonal map ``Q`` to the flattened feature, so ``<Q v, Q x_i> = <v, x_i>`` for every leaked
pair ``(x_i, Q x_i)``. The attack needs no training, no key and no knowledge of how ``Q`` is built (block
butterfly, permutation, chaff layout): for each obfuscated probe it computes its k inner products with the
leaked obfuscated rows, which are exactly its inner products with the k leaked clean tokens, and

- ``profile``: matches them, whitened, against the same profile of each of the adversary's clean gallery
  photos (cosine);
- ``posterior``: maps them back to clean tokens by the Gaussian posterior mean (prior: the adversary's
  gallery and leaked clean tokens) and embeds those with the public identifier (dlib's head).

Where the map is not orthogonal (XNN with a Gaussian M, the curve of ``xnnh:curve``, chaff's extra
coordinates) the profiles carry the transform's error and the attack weakens accordingly: it measures how
much of the orthogonality a design keeps. It is the leaked-pairs attack restricted to these two
estimators, so its curve, envelope and k½ read exactly like ``leaked_pairs``'.
"""

from __future__ import annotations

from collections.abc import Sequence

from veil.attacks import params
from veil.attacks.leaked_pairs import DEFAULT_KS, Embedder, LeakedPairsAttack

ESTIMATORS = ("profile", "posterior")


class InnerProductAttack(LeakedPairsAttack):
    """k leaked pairs vs a clean gallery, using only that the map keeps inner products."""

    name = "inner_products"
    title = "inner products (orthogonal map, k leaked pairs)"
    label = "inner products"
    holdings = ("k leaked (clean ExtNet tokens, obfuscated store row) pairs of owner training images (pairs)",
                "the public ExtNet's identifier (e.g. the rest of dlib's network)",
                "clean photos of the owner's test persons as gallery; the owner's obfuscated test features as probes",
                "that the map is orthogonal (the design, public); never the key, never the map's structure")

    def __init__(self, ks: Sequence[int] = DEFAULT_KS, estimators: Sequence[str] = ESTIMATORS,
                 identifier: Embedder | None = None) -> None:
        for e in list(estimators):
            params.choice("estimators", e, ESTIMATORS)
        super().__init__(ks, estimators, identifier=identifier)


__all__ = ["ESTIMATORS", "InnerProductAttack"]
