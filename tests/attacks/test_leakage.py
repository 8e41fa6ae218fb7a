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
