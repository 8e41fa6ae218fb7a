"""The planner's identity bound: white-box inversion under public weights, identity top-1 vs a clean gallery,
and "not determined" (never safe) while an attack has not converged. SYNTHETIC images, a tiny CNN."""

from __future__ import annotations

import pytest
import torch

from tests.partition.test_cost_planner import _tiny
from veil.attacks.reconstruction_identity import IdentityProbe
from veil.errors import VeilError
from veil.partition import plan
from veil.partition.models import ModelSpec, preprocess


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_identity_bound_white_box_and_convergence() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)  # SYNTHETIC
    spec = ModelSpec("tiny", 3, image_size=16)
    victims, labels = images[40:], torch.arange(8)
    probe = IdentityProbe(lambda x: preprocess(x, spec).flatten(1), victims, labels, labels)  # gallery = victims
    kwargs = dict(epochs=1, attacks=("regression",), splits=["block1"], identity=probe)
    converged = plan(_tiny(), spec, images[:40], victims, white_box={"max_steps": 300, "check_every": 10,
                                                                     "plateau": 0.05, "tv": 0.0}, **kwargs)
    rep = converged.splits[0]
    assert set(rep.attacks) == {"regression", "white_box"} and set(rep.identity) == {"regression", "white_box"}
    assert rep.identity["white_box"]["n"] == 8 and rep.identity["white_box"]["chance"] == pytest.approx(1 / 8)
    body = converged.as_dict()
    assert body["splits"][0]["attacks"]["white_box"]["identity"]["gallery"] == 8
    assert "identity" in body["prior_baseline"]
    loose = plan(_tiny(), spec, images[:40], victims, max_identity=8.0,
                 white_box={"max_steps": 300, "check_every": 10, "plateau": 0.05}, **kwargs)
    strict = plan(_tiny(), spec, images[:40], victims, max_identity=8.0,
                  white_box={"max_steps": 2, "check_every": 10}, **kwargs)
    assert not strict.splits[0].determined and not strict.splits[0].safe and strict.choice is None
    assert loose.splits[0].safe == loose.splits[0].determined  # 8 x chance = 100%: only convergence decides
    assert loose.as_dict()["max_identity_x_chance"] == 8.0
    with pytest.raises(VeilError, match="max-identity"):
        plan(_tiny(), spec, images[:40], victims, max_identity=2.0, epochs=1, attacks=("regression",))
