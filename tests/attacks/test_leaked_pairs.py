"""Leaked-pairs attack vs a clean gallery: recovers a synthetic known map, says "not determined" when it is."""

from __future__ import annotations

import pytest
import torch

from tests.attacks.synth import tokens_of
from veil.attacks import AttackParameterError
from veil.attacks.leakage import Target
from veil.attacks.leaked_pairs import (
    CleanGalleryTarget,
    CurvePoint,
    InverseConfig,
    LeakedPairsAttack,
    k_half,
    kernel_ridge,
)
from veil.metrics import Rate
from veil.obfuscation.xnn import XNN
from veil.obfuscation.xnn_hardened import XNNHardened

FAST = InverseConfig(pca=32, hidden=64, steps=60, min_pairs=16)


@pytest.fixture(scope="module")
def data():
    train, _ = tokens_of(40, 4, seed=1)  # SYNTHETIC owner training persons (pairs come from here)
    test, labels = tokens_of(30, 4, seed=2)  # SYNTHETIC owner test persons
    idx = Target.from_features(test, labels)
    return train, test, labels, idx.gallery, idx.probe


def target_for(obf, data) -> CleanGalleryTarget:
    _, test, labels, gallery, probe = data
    return CleanGalleryTarget(test[gallery], labels[gallery], obf(test[probe]), labels[probe])


def rates(result, estimator):
    return {p.k: p for p in result.points if p.estimator == estimator}


def test_structured_recovers_a_known_xnn_map_and_reaches_clean_leakage(data):
    train, *_ = data
    xnn = XNN.random(6, 12, generator=torch.Generator().manual_seed(3))
    clean = LeakedPairsAttack((0,), ("identity",)).run(train[:4], train[:4], target_for(lambda t: t, data))
    r = LeakedPairsAttack((0, 1, 8), ("identity", "structured")).run(train, xnn(train), target_for(xnn, data))
    s = rates(r, "structured")
    assert s[1].rate is None and "not determined" in s[1].note  # 6 rows for 12 unknowns, nothing held out
    assert s[8].rate.hits == clean.points[0].rate.hits  # 48 rows >= 12: the map, and leakage, exactly back
    assert rates(r, "identity")[0].rate.value < clean.points[0].rate.value


def test_kernel_ridge_recovers_a_known_linear_map():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(200, 10, generator=g), torch.randn(10, 5, generator=g)
    predict, lam = kernel_ridge(x, x @ w + 1.0)
    new = torch.randn(20, 10, generator=g)
    assert torch.allclose(predict(new), new @ w + 1.0, atol=1e-3) and lam <= 1e-3


def test_generic_estimators_on_a_token_mixing_map(data):
    train, *_ = data
    obf = XNNHardened.random(6, 12, block=8, generator=torch.Generator().manual_seed(1))
    store = obf(train)
    recnet = torch.nn.Flatten()  # a stand-in cloud model: any fixed function of the obfuscated rows
    attack = LeakedPairsAttack((0, 1, 32, 160), inverse=FAST)
    r = attack.run(train, store, target_for(obf, data), store, recnet)
    assert rates(r, "identity")[0].rate is not None  # same number of values: read as tokens
    assert rates(r, "structured")[32].rate is None and "not token-wise" in rates(r, "structured")[32].note
    assert all(rates(r, e)[1].rate is None for e in ("ridge", "learned", "bridge"))
    assert rates(r, "learned")[32].rate is not None
    chance = r.points[0].chance
    assert rates(r, "ridge")[160].rate.value > 5 * chance  # an orthogonal map is linear: ridge inverts it
    strongest = {p.k: p for p in r.strongest()}
    assert strongest[160].estimator.startswith("strongest:")
    assert {p["attack"] for p in r.curve()} >= {"ridge", "learned", "bridge", "strongest:ridge"} - {"strongest:ridge"}


def test_k_half_and_parameter_errors():
    pts = [CurvePoint(0, "s", Rate(1, 100), 0.01), CurvePoint(4, "s", None, 0.01),
           CurvePoint(16, "s", Rate(40, 100), 0.01)]
    assert k_half(pts, 0.6) == 16 and k_half(pts, 0.9) is None
    with pytest.raises(AttackParameterError, match="ks"):
        LeakedPairsAttack(())
    with pytest.raises(AttackParameterError, match="estimators"):
        LeakedPairsAttack(estimators=("magic",))
    with pytest.raises(AttackParameterError, match="steps"):
        InverseConfig(steps=0)


def test_more_pairs_than_given_is_an_error(data):
    train, *_ = data
    with pytest.raises(ValueError, match="only"):
        LeakedPairsAttack((500,)).run(train, train, target_for(lambda t: t, data))


def test_strongest_never_falls_as_k_grows():
    from veil.attacks.leaked_pairs import LeakedPairsResult

    pts = [CurvePoint(0, "identity", Rate(30, 100), 0.01), CurvePoint(4, "ridge", Rate(10, 100), 0.01),
           CurvePoint(4, "bridge", None, 0.01, "not determined"), CurvePoint(16, "bridge", Rate(50, 100), 0.01)]
    env = {p.k: p for p in LeakedPairsResult(pts, 0.0).strongest()}
    assert env[4].rate.hits == 30 and env[4].estimator == "strongest:identity" and "k = 0" in env[4].note
    assert env[16].rate.hits == 50


def test_draws_on_one_store_share_its_pca(data, monkeypatch):
    """The store's SVD is made once per store, not once per draw of the pairs (time and peak memory of the bench)."""
    import veil.attacks.leaked_pairs as lp

    train, *_ = data
    obf = XNNHardened.random(6, 12, block=8, generator=torch.Generator().manual_seed(1))
    store = obf(train)
    calls = []
    real = lp.store_pca
    monkeypatch.setattr(lp, "store_pca", lambda *a: calls.append(1) or real(*a))
    attack = LeakedPairsAttack((0, 4), ("identity", "ridge"), inverse=FAST)
    first = attack.run(train[:8], store[:8], target_for(obf, data), store)
    again = attack.run(train[8:16], store[8:16], target_for(obf, data), store)
    assert len(calls) == 1 and rates(first, "ridge")[4].rate is not None and rates(again, "ridge")[4].rate is not None
    attack.run(train[:8], store[:8], target_for(obf, data), store.clone())  # another store: its own PCA
    assert len(calls) == 2
