"""InstaHide's |x| attack: succeeds where the mask is a sign flip (SYNTHETIC faces), fails where it is not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from veil.attacks import registry
from veil.attacks.base import AttackParameterError, View
from veil.attacks.instahide_abs import InstaHideAbsAttack, abs_images, image_target
from veil.obfuscation.instahide import InstaHide, capped_coefficients
from veil.obfuscation.randomness import TorchRandomness

SIDE, PERSONS, TIMES = 16, 30, 4


def synthetic_faces(persons: int, per_person: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SYNTHETIC 'photos' in [0, 1]: a person's smooth template plus each photo's own fine texture."""
    g = torch.Generator().manual_seed(seed)
    template = F.interpolate(torch.rand(persons, 3, 4, 4, generator=g), size=(SIDE, SIDE), mode="bilinear",
                             align_corners=False)
    labels = torch.arange(persons).repeat_interleave(per_person)
    texture = 0.25 * (torch.rand(len(labels), 3, SIDE, SIDE, generator=g) - 0.5)
    return (template[labels] + texture).clamp(0, 1), labels


def owner_set(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gallery photos, their labels, private photos, their labels, a public pool of other persons)."""
    faces, labels = synthetic_faces(PERSONS, 2, seed)
    public, _ = synthetic_faces(50, 1, seed + 100)
    return faces[0::2], labels[0::2], faces[1::2], labels[1::2], public


def mixtures(private: torch.Tensor, public: torch.Tensor, times: int, seed: int) -> torch.Tensor:
    """InstaHide's k = 2 mixtures in [-1, 1] *before* the mask: each private image with a public one, T times."""
    rng = TorchRandomness(seed)
    reps = private.repeat_interleave(times, dim=0)
    lam = capped_coefficients(rng, len(reps), 2, 0.65)
    partner = public[rng.randint(len(public), (len(reps),))]
    return lam[:, :1, None, None] * (2 * reps - 1) + lam[:, 1:, None, None] * (2 * partner - 1)


def attack_on(encodings: torch.Tensor, neighbours: int = TIMES - 1):  # noqa: ANN201
    g, gl, _, pl, _ = owner_set()
    target = image_target(g, gl, encodings, pl.repeat_interleave(TIMES))
    image_of = torch.arange(PERSONS).repeat_interleave(TIMES)
    return InstaHideAbsAttack(neighbours, detail=3).run(target, image_of=image_of)


def test_sign_flips_leave_the_attack_exactly_where_it_was() -> None:
    _, _, private, _, public = owner_set()
    mixed = mixtures(private, public, TIMES, seed=3)
    signs = TorchRandomness(4).signs(tuple(mixed.shape))
    assert torch.allclose(abs_images((mixed * signs + 1) / 2), abs_images((mixed + 1) / 2), atol=1e-6)
    flipped, plain = attack_on((mixed * signs + 1) / 2), attack_on((mixed + 1) / 2)
    assert torch.equal(flipped.leakage.hits, plain.leakage.hits)  # the invariant holds: the same encodings named
    chance = flipped.leakage.chance
    assert flipped.single.rate.value > 4 * chance
    assert flipped.leakage.rate.value > 8 * chance
    # siblings (encodings of one private image) are found far above their chance, 3 of 119 others
    assert flipped.sibling_precision is not None and flipped.sibling_precision > 0.25


def test_instahide_itself_is_read() -> None:
    g, gl, private, pl, public = owner_set()
    enc, _ = InstaHide(2, public, randomness=TorchRandomness(7)).mix(private.repeat_interleave(TIMES, dim=0))
    res = InstaHideAbsAttack(TIMES - 1, detail=3).on(View(target=image_target(g, gl, enc, pl.repeat_interleave(TIMES))),
                                                     command="pytest (SYNTHETIC)")
    assert res.attack == "instahide_abs" and res.rate.n == PERSONS * TIMES
    assert res.rate.value > 8 * res.chance and res.details["single"]["n"] == PERSONS * TIMES


def test_a_mask_that_is_not_a_sign_flip_defeats_it() -> None:
    _, _, private, _, public = owner_set()
    mixed = mixtures(private, public, TIMES, seed=3)
    pad = TorchRandomness(5).uniform(tuple(mixed.shape))
    padded = torch.remainder((mixed + 1) / 2 + pad, 1.0)  # a one-time additive pad modulo 1: |.| keeps nothing
    kept = attack_on((mixed + 1) / 2)
    broken = attack_on(padded)
    assert broken.leakage.rate.value < 3 * broken.leakage.chance
    assert broken.leakage.rate.value < kept.leakage.rate.value / 4
    assert broken.sibling_precision is not None and broken.sibling_precision < 0.1


def test_registered_and_parameters_checked() -> None:
    assert registry.attacks()["instahide_abs"] is InstaHideAbsAttack
    with pytest.raises(AttackParameterError) as err:
        InstaHideAbsAttack(neighbours=-1)
    assert err.value.parameter == "neighbours"
    with pytest.raises(ValueError, match="one shape"):
        image_target(torch.zeros(2, 3, 8, 8), torch.arange(2), torch.zeros(2, 3, 4, 4), torch.arange(2))
