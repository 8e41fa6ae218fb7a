"""InstaHide and NeuraCrypt baselines, the randomness they draw from, and soft-target RecNet training.

Images here are SYNTHETIC random pixels: these tests check the transforms' definitions, not utility.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from veil.attacks.recnet_fit import AttackRecNetConfig, fit_recnet
from veil.attacks.simulation import simulate_neuracrypt
from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.obfuscation import InstaHide, NeuraCrypt, SystemRandomness, TorchRandomness
from veil.obfuscation.instahide import capped_coefficients
from veil.obfuscation.keyed import neuracrypt_from_key
from veil.train.losses import SoftCosFace


def _images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [2, 3, 4])
def test_instahide_coefficients_sum_to_one_and_respect_the_cap(k):
    lam = capped_coefficients(TorchRandomness(1), 2000, k, 0.65)
    assert torch.allclose(lam.sum(1), torch.ones(2000), atol=1e-5)
    assert float(lam.max()) <= 0.65 + 1e-6 and float(lam.min()) > 0


def test_instahide_mixes_are_the_formula_with_signs():
    """Undo the signs with |.|: |2*mix-1| must equal |sum_j lam_j (2 x_j - 1)| for the drawn partners."""
    private, public = _images(6, 0), _images(1, 1)  # one public image: the public partner is known
    ih = InstaHide(2, public, randomness=TorchRandomness(3))
    mixed, soft = ih.mix(private, torch.eye(6))
    assert mixed.shape == private.shape and 0 <= float(mixed.min()) and float(mixed.max()) <= 1
    lam0 = soft.diagonal()  # k=2: the only private label is the image's own, weighted by its coefficient
    unit = private.float() / 127.5 - 1
    expected = lam0.view(-1, 1, 1, 1) * unit + (1 - lam0).view(-1, 1, 1, 1) * (public.float() / 127.5 - 1)
    assert torch.allclose((mixed * 2 - 1).abs(), expected.abs(), atol=1e-5)
    signs = torch.sign(mixed * 2 - 1) * torch.sign(expected)
    assert 0.4 < float((signs > 0).float().mean()) < 0.6  # every pixel's sign is a coin flip


def test_instahide_k3_labels_mix_two_private_persons():
    private = _images(50, 0)
    ih = InstaHide(3, _images(10, 1), randomness=TorchRandomness(0))
    _, soft = ih.mix(private, torch.eye(50))
    assert bool(((soft > 0).sum(1) <= 2).all()) and bool(((soft > 0).sum(1) >= 1).all())
    assert bool((soft.sum(1) < 1).all())  # the public image's share carries no label
    assert float(soft.sum(1).min()) >= 0.35 - 1e-6


def test_instahide_rejects_bad_parameters():
    with pytest.raises(VeilError, match="cap"):
        InstaHide(3, _images(2), cap=0.2)
    with pytest.raises(VeilError, match="public"):
        InstaHide(2, torch.empty(0, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(VeilError, match="public pool images"):
        InstaHide(2, _images(2, size=16)).mix(_images(2))


def test_neuracrypt_from_key_is_deterministic_and_key_bound():
    key = OwnerKey.generate()
    a, b = neuracrypt_from_key(key, 32, patch=8, dim=16), neuracrypt_from_key(key, 32, patch=8, dim=16)
    other = neuracrypt_from_key(OwnerKey.generate(), 32, patch=8, dim=16)
    x = _images(4)
    assert torch.equal(a.encode_ordered(x), b.encode_ordered(x))
    assert not torch.allclose(a.encode_ordered(x), other.encode_ordered(x))
    assert a.public_info() == {"method": "neuracrypt", "patch": 8, "depth": 2, "dim": 16, "img_size": 32}


def test_neuracrypt_shuffles_each_sample_independently():
    nc = NeuraCrypt.random(32, patch=8, dim=16, generator=torch.Generator().manual_seed(0),
                           randomness=TorchRandomness(1))
    x = _images(1).repeat(8, 1, 1, 1)
    ordered, shuffled = nc.encode_ordered(x), nc(x)
    assert shuffled.shape == (8, 16, 16)
    # same tokens, different orders across the batch
    assert torch.allclose(shuffled.sort(dim=1).values, ordered.sort(dim=1).values, atol=1e-5)
    assert len({tuple(torch.argsort(s[:, 0]).tolist()) for s in shuffled}) > 1
    with pytest.raises(VeilError, match="made for images"):
        nc(_images(2, size=16))


def test_system_randomness_draws_look_uniform():
    rng = SystemRandomness()
    assert abs(float(rng.signs((20000,)).mean())) < 0.05
    assert abs(float(rng.normal((20000,)).std()) - 1) < 0.05
    counts = torch.bincount(rng.randint(10, (20000,)), minlength=10).float()
    assert float(counts.min()) > 1700 and float(counts.max()) < 2300
    assert not torch.equal(SystemRandomness().uniform((8,)), SystemRandomness().uniform((8,)))


def test_soft_cosface_equals_cosface_on_one_hot_targets():
    from veil.train.losses import cosface

    torch.manual_seed(0)
    soft = SoftCosFace(5, 8)
    hard = cosface(5, 8)
    hard.W.data.copy_(soft.W.data)
    emb, labels = torch.randn(16, 8), torch.randint(0, 5, (16,))
    assert torch.allclose(soft(emb, F.one_hot(labels, 5).float()), hard(emb, labels), atol=1e-5)


def test_fit_recnet_learns_from_soft_targets_and_image_transforms():
    """A tiny SYNTHETIC problem: separable classes, trained through a random NeuraCrypt simulation."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(12)
    base = torch.randint(0, 256, (4, 3, 16, 16), generator=g)
    images = (base[labels] + torch.randint(-20, 21, (48, 3, 16, 16), generator=g)).clamp(0, 255).to(torch.uint8)
    sim = simulate_neuracrypt(images, labels, patch=8, dim=16, depth=1, seed=0)
    cfg = AttackRecNetConfig(epochs=2, batch_size=16, dim=16, num_heads=2, emb_dim=8, warmup_epochs=0)
    recnet = sim.fit(cfg)
    assert recnet.cfg.in_tokens == 4 and recnet.cfg.in_dim == 16
    soft = F.one_hot(labels, 4).float() * 0.7
    rec2 = fit_recnet(torch.randn(48, 3, 8), soft, cfg)
    assert rec2(torch.randn(2, 3, 8)).shape == (2, 8)
