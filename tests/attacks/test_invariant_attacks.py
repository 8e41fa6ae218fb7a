"""Invariant attacks without pairs: each succeeds where its invariant holds exactly (SYNTHETIC), fails where not."""

from __future__ import annotations

import torch

from tests.attacks.synth import tokens_of
from veil.attacks import registry
from veil.attacks.base import View
from veil.attacks.leakage import Target
from veil.attacks.spectrum import TokenSpectrumAttack
from veil.attacks.token_multiset import TokenMultisetAttack
from veil.obfuscation.xnn import XNN
from veil.obfuscation.xnn_hardened import XNNHardened


def clean_gallery_target(transform) -> Target:  # noqa: ANN001
    test, labels = tokens_of(40, 4, seed=2)  # SYNTHETIC owner test persons
    idx = Target.from_features(test, labels)
    feats = test.clone()
    feats[idx.probe] = transform(test[idx.probe]).reshape(len(idx.probe), *test.shape[1:])
    return Target(feats, labels, idx.gallery, idx.probe)


def shuffle_each(tokens: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(9)
    return torch.stack([t[torch.randperm(len(t), generator=g)] for t in tokens])


def test_spectrum_reads_xnn_through_an_orthogonal_m_and_not_through_others() -> None:
    clean = TokenSpectrumAttack().run(clean_gallery_target(lambda t: t))
    xnn = XNN.random(6, 12, generator=torch.Generator().manual_seed(1))
    orth = TokenSpectrumAttack().run(clean_gallery_target(xnn))
    assert clean.rate.value > 5 * clean.chance
    assert orth.rate.hits == clean.rate.hits  # the invariant holds exactly: the same probes are named
    gauss = XNN.random(6, 12, kind="gaussian", generator=torch.Generator().manual_seed(1))
    mixed = XNNHardened.random(6, 12, block=8, generator=torch.Generator().manual_seed(1))
    for broken in (gauss, mixed):
        assert TokenSpectrumAttack().run(clean_gallery_target(broken)).rate.value < clean.rate.value / 2


def test_multiset_reads_through_a_per_sample_shuffle_and_not_through_channel_mixing() -> None:
    clean = TokenMultisetAttack().run(clean_gallery_target(lambda t: t))
    shuffled = TokenMultisetAttack().run(clean_gallery_target(shuffle_each))
    assert clean.rate.value > 5 * clean.chance and shuffled.rate.hits == clean.rate.hits
    xnn = XNN.random(6, 12, generator=torch.Generator().manual_seed(1))
    assert TokenMultisetAttack().run(clean_gallery_target(xnn)).rate.value < clean.rate.value / 2


def test_both_are_registered_and_run_on_a_view() -> None:
    known = registry.attacks()
    assert known["token_spectrum"] is TokenSpectrumAttack and known["token_multiset"] is TokenMultisetAttack
    res = TokenMultisetAttack().on(View(target=clean_gallery_target(shuffle_each)), command="test")
    assert res.attack == "token_multiset" and res.rate.n == 120 and res.details["invariant"]
