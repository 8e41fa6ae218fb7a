"""The black-box attack on SYNTHETIC features: it finds identity when FG leaks it, and only chance when FG does not."""

from __future__ import annotations

import pytest
import torch

from veil.attacks.black_box import BlackBoxAttack, NoiseExpectationAttack
from veil.attacks.leakage import Target
from veil.attacks.recnet_fit import AttackRecNetConfig

N, D = 6, 32
CFG = AttackRecNetConfig(epochs=6, batch_size=32, dim=32, depth=1, num_heads=2, emb_dim=16, warmup_epochs=0.5)


def fake_images(labels: torch.Tensor, offset: int) -> torch.Tensor:
    """SYNTHETIC 'images' that carry (identity + offset, sample index) in two pixels."""
    img = torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8)
    img[:, 0, 0, 0] = (labels + offset).to(torch.uint8)
    img[:, 0, 0, 1] = torch.arange(len(labels), dtype=torch.uint8)
    img[:, 0, 0, 2] = offset
    return img


def leaky_fg(images: torch.Tensor) -> torch.Tensor:
    """Identity prototype + per-image noise; mirrored images (flip(-1)) read the same pixels reversed."""
    x = images if images[0, 0, 0, 3] == 0 else images.flip(-1)
    proto = torch.randn(256, N, D, generator=torch.Generator().manual_seed(0))
    ident, sample = x[:, 0, 0, 0].long(), x[:, 0, 0, 1].long() + 256 * x[:, 0, 0, 2].long()
    noise = torch.stack([torch.randn(N, D, generator=torch.Generator().manual_seed(int(s) + 1)) for s in sample])
    return proto[ident] + 0.5 * noise


def blind_fg(images: torch.Tensor) -> torch.Tensor:
    """Features that depend only on the image's position in its batch (seeded): no identity in them at all."""
    return torch.randn(len(images), N, D, generator=torch.Generator().manual_seed(len(images)))


def owner_target(fg) -> Target:
    labels = torch.arange(20).repeat_interleave(4)
    imgs = fake_images(labels, 100)
    return Target.from_features(fg(imgs), labels, seed=0, flipped=fg(imgs.flip(-1)))


def aux_set() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(30).repeat_interleave(4)
    return fake_images(labels, 1), labels


def test_leaky_fg_is_identified_far_above_chance():
    images, labels = aux_set()
    r = BlackBoxAttack(CFG, seed=0).run(leaky_fg, images, labels, owner_target(leaky_fg), budgets=(40,))
    assert r.chance == pytest.approx(1 / 20)
    assert r.rate.value > 0.6, r.rate
    assert [p.images for p in r.points] == [40, 120] and [p.queries for p in r.points] == [80, 240]
    assert r.points[0].identities <= 30


def test_blind_fg_leaves_only_chance():
    images, labels = aux_set()
    r = BlackBoxAttack(CFG, seed=0).run(blind_fg, images, labels, owner_target(blind_fg))
    lo, hi = r.rate.interval
    assert lo <= 1 / 20 <= hi and r.rate.value < 0.15, r.rate  # chance inside the interval, and nowhere near leaky
    assert r.rate.n == 60


def test_bad_inputs_are_value_errors():
    images, labels = aux_set()
    with pytest.raises(ValueError, match="query must return"):
        BlackBoxAttack(CFG).run(lambda x: torch.zeros(len(x), 5), images, labels, owner_target(leaky_fg))
    with pytest.raises(ValueError, match="seed"):
        BlackBoxAttack(CFG, seed=-1)
    with pytest.raises(ValueError, match="eps"):
        NoiseExpectationAttack(-1.0)


def test_noise_expectation_runs_on_public_tokens():
    images, labels = aux_set()
    tokens = leaky_fg(images)
    r = NoiseExpectationAttack(0.3, CFG).run(tokens, labels, owner_target(leaky_fg))
    assert r["n"] == 60 and r["chance"] == pytest.approx(1 / 20) and r["eps"] == 0.3
