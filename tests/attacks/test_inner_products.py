"""Inner-product attack: succeeds where the map is orthogonal (SYNTHETIC), fails where it is not."""

from __future__ import annotations

import pytest
import torch

from tests.attacks.synth import tokens_of
from veil.attacks import AttackParameterError, registry
from veil.attacks.base import View
from veil.attacks.inner_products import InnerProductAttack
from veil.attacks.leakage import Target
from veil.attacks.leaked_pairs import CleanGalleryTarget, LeakedPairsAttack
from veil.obfuscation.xnn_hardened import XNNHardened


@pytest.fixture(scope="module")
def data():
    train, _ = tokens_of(60, 3, seed=1)  # SYNTHETIC owner training persons: 180 pairs available, 72 values a row
    test, labels = tokens_of(30, 4, seed=2)  # SYNTHETIC owner test persons
    idx = Target.from_features(test, labels)
    return train, test, labels, idx.gallery, idx.probe


def run(data, transform, ks=(0, 8, 80)):
    train, test, labels, gallery, probe = data
    target = CleanGalleryTarget(test[gallery], labels[gallery], transform(test[probe]), labels[probe])
    clean = LeakedPairsAttack((0,), ("identity",)).run(train[:2], train[:2], CleanGalleryTarget(
        test[gallery], labels[gallery], test[probe], labels[probe])).points[0].rate.value
    r = InnerProductAttack(ks).run(train, transform(train), target)
    return clean, {(p.k, p.estimator): p for p in r.points}, r.points[0].chance


def orthogonal(dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q.float()


def test_an_orthogonal_map_gives_the_clean_leakage_back_from_enough_pairs(data):
    q = orthogonal(72, 5)
    clean, pts, chance = run(data, lambda t: (t.reshape(len(t), -1) @ q).reshape(len(t), 1, -1))
    for est in ("profile", "posterior"):
        assert pts[(80, est)].rate.value >= clean - 0.05, est  # 80 pairs span the 72 values: exact profiles
        assert pts[(8, est)].rate.value > 3 * chance, est  # a few pairs already locate the probes
    assert (0, "profile") not in pts  # k = 0 gives no inner product to compare


def test_the_butterfly_of_xnnh_is_orthogonal_too(data):
    obf = XNNHardened.random(6, 12, block=8, generator=torch.Generator().manual_seed(1))
    clean, pts, _ = run(data, obf, ks=(80,))
    assert pts[(80, "posterior")].rate.value >= clean - 0.05


def test_a_map_that_is_not_orthogonal_defeats_it(data):
    g = torch.randn(72, 72, generator=torch.Generator().manual_seed(7))
    g = g * torch.logspace(-2, 1, 72)[:, None]  # badly conditioned: inner products are not kept
    clean, pts, _ = run(data, lambda t: (t.reshape(len(t), -1) @ g).reshape(len(t), 1, -1), ks=(16,))
    _, orth, _ = run(data, lambda t: (t.reshape(len(t), -1) @ orthogonal(72, 5)).reshape(len(t), 1, -1), ks=(16,))
    for est in ("profile", "posterior"):  # the same 16 pairs: exact through Q, useless through G
        assert orth[(16, est)].rate.value >= clean - 0.05 and pts[(16, est)].rate.value < clean / 4, est


def test_registered_with_a_view_and_checks_its_estimators(data):
    train, test, labels, gallery, probe = data
    assert registry.attacks()["inner_products"] is InnerProductAttack
    with pytest.raises(AttackParameterError) as err:
        InnerProductAttack(estimators=("ridge",))
    assert err.value.parameter == "estimators"
    q = orthogonal(72, 5)
    obf = lambda t: (t.reshape(len(t), -1) @ q).reshape(len(t), 1, -1)  # noqa: E731
    target = Target(torch.cat([test[gallery], obf(test[probe]).reshape(-1, 6, 12)]), torch.cat(
        [labels[gallery], labels[probe]]), torch.arange(len(gallery)), torch.arange(len(gallery), len(test)))
    res = InnerProductAttack((80,)).on(View(target=target, pairs=(train, obf(train).reshape(-1, 6, 12))))
    assert res.attack == "inner_products" and res.rate.value > 0.5


def test_draws_merge_to_the_mean_hits_and_keep_each_draw() -> None:
    from veil.attacks.leaked_pairs import CurvePoint, LeakedPairsResult, merge_draws
    from veil.metrics import Rate

    def result(hits: int) -> LeakedPairsResult:
        return LeakedPairsResult([CurvePoint(4, "profile", Rate(hits, 100), 0.01),
                                  CurvePoint(1, "ridge", None, 0.01, "not determined")], 1.0)

    merged = merge_draws([result(10), result(20), result(31)])
    point = merged.points[0]
    assert point.rate == Rate(20, 100) and point.draws == [0.10, 0.20, 0.31] and "3 draws" in point.note
    assert merged.points[1].rate is None and merged.config["draws"] == 3 and merged.seconds == 3.0
    assert merged.strongest()[0].draws == point.draws
    with pytest.raises(ValueError, match="no draws"):
        merge_draws([])


def test_ridge_solve_leaves_the_intercept_unpenalised() -> None:
    from veil.attacks import ridge

    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([[1.0], [2.0], [3.0]]) + 5.0
    w = ridge.solve(ridge.with_intercept(x), y, lam=1e3, relative=False, intercept=True)
    assert abs(float(w[-1]) - 5.0) < 0.5  # a heavy penalty shrinks the slopes, not the offset
    assert ridge.choose_penalty((1.0, 2.0, 3.0), lambda lam: (lam - 2.0) ** 2) == (2.0, 0.0)
