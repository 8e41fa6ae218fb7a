import pytest
import torch

from tests.attacks.synth import target_of, tokens_of
from veil.attacks.leakage import Target, identity_leakage, pooled_embedder


def test_gallery_has_one_image_per_person_and_chance_is_its_inverse():
    tokens, labels = tokens_of(10, 3, seed=0)
    t = target_of(tokens, labels)
    assert sorted(labels[t.gallery].tolist()) == list(range(10))
    assert set(t.gallery.tolist()).isdisjoint(t.probe.tolist())
    assert len(t.gallery) + len(t.probe) == len(labels)
    assert t.chance == pytest.approx(0.1)


def test_leakage_is_high_on_identifying_tokens_and_near_chance_on_noise():
    tokens, labels = tokens_of(20, 3, seed=0)
    good = identity_leakage(target_of(tokens, labels), pooled_embedder(tokens.mean(dim=(0, 1))))
    assert good.rate.value > 0.9 and good.rate.n == 40
    noise = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(0))
    bad = identity_leakage(target_of(noise, labels), pooled_embedder())
    assert bad.rate.value < 0.3
    assert bad.chance == pytest.approx(1 / 20)


def test_target_rejects_mismatched_inputs():
    tokens, labels = tokens_of(4, 2, seed=0)
    with pytest.raises(ValueError, match="labels"):
        Target.from_features(tokens, labels[:-1])
    with pytest.raises(ValueError, match="flipped"):
        Target.from_features(tokens, labels, flipped=tokens[:, :2])


def test_a_model_that_reads_the_tokens_leaks_through_the_cloud_model_attack():
    from veil.attacks import CloudModelAttack

    tokens, labels = tokens_of(15, 3, seed=0)
    centre = tokens.mean(dim=(0, 1))
    model = torch.nn.Module()
    model.forward = lambda x: x.mean(dim=1) - centre  # a stand-in for the cloud's RecNet
    r = CloudModelAttack().run(model, target_of(tokens, labels))
    assert r.rate.value > 0.9 and r.chance == pytest.approx(1 / 15)


def test_per_probe_hits_survive_the_dict_round_trip_compactly():
    """SYNTHETIC tokens: the hit vector a paired bootstrap needs comes back from disk, bit for bit."""
    import json

    from veil.attacks.base import AttackResult
    from veil.attacks.leakage import LeakageResult
    from veil.metrics import bootstrap_ratio

    tokens, labels = tokens_of(20, 3, seed=0)
    noise = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(1))
    target = target_of(tokens + 5 * noise, labels)  # about half the probes named
    good = identity_leakage(target, pooled_embedder(tokens.mean(dim=(0, 1))))
    bad = identity_leakage(target_of(noise, labels), pooled_embedder())
    assert good.hits is not None and 0 < int(good.hits.sum()) < len(good.hits)  # a vector worth keeping
    on_disk = json.loads(json.dumps(good.as_dict()))
    assert len(json.dumps(on_disk["probe_hits"])) < 60  # 40 probes: a few bytes, not 40 booleans
    back = LeakageResult.from_dict(on_disk)
    assert back.hits is not None and torch.equal(back.hits, good.hits.bool())
    assert back.rate == good.rate
    groups = labels[target.probe]
    assert bootstrap_ratio(back.hits, bad.hits, groups) == bootstrap_ratio(good.hits, bad.hits, groups)
    result = AttackResult("toy", good, ("x",), "pytest", {"method": "xnn"})
    again = AttackResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.leakage is not None and torch.equal(again.leakage.hits, good.hits.bool())
    assert "probe_hits" not in again.details and again.to_dict() == result.to_dict()


def test_a_result_without_probe_hits_still_reads_and_bad_bits_are_refused():
    from veil.attacks.leakage import LeakageResult
    from veil.metrics import Rate, pack_hits

    old = {"hits": 3, "n": 5, "rate": 0.6, "ci95": [0.2, 0.9], "chance": 0.5, "gallery": 2}
    assert LeakageResult.from_dict(old).hits is None and LeakageResult.from_dict(old).rate == Rate(3, 5)
    wrong_count = {**old, "probe_hits": pack_hits(torch.tensor([True, False, False, False, True]))}
    with pytest.raises(ValueError, match="2 of 5"):
        LeakageResult.from_dict(wrong_count)
    with pytest.raises(ValueError, match="cannot hold"):
        LeakageResult.from_dict({**old, "probe_hits": {"length": 50, "bits": "AA=="}})
    with pytest.raises(ValueError, match="base64"):
        LeakageResult.from_dict({**old, "probe_hits": {"length": 5, "bits": "not base64!"}})
