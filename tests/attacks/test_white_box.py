"""White-box inversion: recovers SYNTHETIC images through the true public weights, not through other weights;
stops on a plateau and says "not converged" when its budget ends while the loss still falls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from veil.attacks import AttackParameterError, registry
from veil.attacks.base import View
from veil.attacks.reconstruction import prior_scores
from veil.attacks.reconstruction_identity import IdentityProbe
from veil.attacks.white_box import WhiteBoxInversionAttack, plateaued


@pytest.fixture(autouse=True)
def one_thread():
    """Hundreds of tiny optimiser steps: on shared cores, thread hand-offs cost more than the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """SYNTHETIC 16 px images: upsampled 4x4 colour noise (smooth, as faces are at this scale)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=16, mode="bilinear", align_corners=False)


def head(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1)).eval()
    return net.requires_grad_(False)


def test_inverts_through_the_public_weights_and_fails_through_others() -> None:
    victims, aux = smooth_images(6, 1), smooth_images(40, 2)
    public = head(0)
    with torch.no_grad():
        exposed = public(victims)
    prior, _ = prior_scores(aux, victims)
    attack = WhiteBoxInversionAttack(public, tv=0.01, lr=0.05, max_steps=400, check_every=20, plateau=0.01)
    r = attack.run(exposed, aux, victims)
    assert r.converged and r.steps < 400  # stopped on its plateau
    assert r.ssim.mean() > prior.mean() + 0.3 and r.ssim.mean() > 0.8
    wrong = WhiteBoxInversionAttack(head(1), tv=0.01, lr=0.05, max_steps=400, check_every=20).run(exposed, aux, victims)
    assert wrong.ssim.mean() < r.ssim.mean() - 0.3  # weights not public: the invariant is gone
    short = WhiteBoxInversionAttack(public, tv=0.01, lr=0.05, max_steps=10, check_every=20).run(exposed, aux, victims)
    assert not short.converged and short.summary()["converged"] is False  # still falling: not determined
    res = attack.on(View(aux_images=aux, exposed=exposed, truth=victims))
    assert res.details["converged"] and res.measures["ssim"].baseline == pytest.approx(float(prior.mean()))


def test_plateau_rule_and_parameters() -> None:
    assert not plateaued([1.0] * 5, 5, 0.01)  # one window only
    assert plateaued([1.0] * 10, 5, 0.01) and not plateaued([2.0] * 5 + [1.0] * 5, 5, 0.01)
    with pytest.raises(AttackParameterError) as err:
        WhiteBoxInversionAttack(head(0), max_steps=0)
    assert err.value.parameter == "max_steps"
    with pytest.raises(AttackParameterError):
        WhiteBoxInversionAttack("not a model")  # type: ignore[arg-type]
    assert registry.attacks()["white_box_inversion"] is WhiteBoxInversionAttack


def test_identity_probe_names_true_images_and_not_the_mean_face() -> None:
    gallery = smooth_images(10, 3)  # SYNTHETIC: 10 identities, one gallery image each
    labels = torch.arange(10)
    probe = IdentityProbe(lambda x: x.flatten(1), gallery, labels, labels)
    same = probe(gallery + 0.01)
    assert same["rate"] == 1.0 and same["n"] == 10 and probe.chance == 0.1
    assert probe.prior(smooth_images(30, 4))["hits"] <= 1  # one constant image names at most one person
    with pytest.raises(ValueError, match="in the gallery"):
        IdentityProbe(lambda x: x.flatten(1), gallery, labels, torch.tensor([11]))
