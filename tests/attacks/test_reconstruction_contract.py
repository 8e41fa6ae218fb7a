"""The partition's reconstruction attacks behind the Attack contract: the c-GAN / regression decoder on images
and the tabular decoder. Every input here is SYNTHETIC (random images, a random conv "enclave", random rows):
these tests check the contract (parameters, result schema, registration), not how well the attacks work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from typer.testing import CliRunner

from veil.attacks import AttackParameterError, View
from veil.attacks.base import Measure
from veil.attacks.reconstruction import ReconstructionAttack, reconstruction_attack
from veil.attacks.tabular_decoder import TabularDecoderAttack, decode, feature_errors

SIZE = 16


def _images(n: int, seed: int) -> torch.Tensor:
    """SYNTHETIC uint8 images: smooth random blobs, (n, 3, 16, 16)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear") * 255).to(torch.uint8)


def _enclave() -> torch.nn.Module:
    """A SYNTHETIC trusted partition: one fixed random conv, 16 px images -> (4, 8, 8) feature maps."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU()).eval()


@pytest.mark.parametrize("kwargs, name", [({"kind": "vae"}, "kind"), ({"epochs": 0}, "epochs"),
                                          ({"batch_size": -1}, "batch_size"), ({"lr": 0.0}, "lr"),
                                          ({"d_lr": "fast"}, "d_lr"), ({"l1_weight": -1.0}, "l1_weight"),
                                          ({"seed": -3}, "seed"), ({"keep": 1.5}, "keep")])
def test_reconstruction_rejects_a_bad_parameter_by_name(kwargs, name):
    with pytest.raises(AttackParameterError, match=name) as err:
        ReconstructionAttack(**kwargs)
    assert err.value.parameter == name and isinstance(err.value, ValueError)


@pytest.mark.parametrize("kind", ["cgan", "regression"])
def test_reconstruction_on_a_view_reports_ssim_and_psnr_with_ci_n_and_baseline(kind):
    enclave = _enclave()
    aux, victims = _images(32, 1), _images(6, 2)  # SYNTHETIC
    with torch.no_grad():
        exposed = enclave(victims.float() / 255)
    view = View(query=lambda x: enclave(x.float() / 255), aux_images=aux, exposed=exposed, truth=victims)
    result = ReconstructionAttack(kind, epochs=1, batch_size=16, keep=2).on(view, command="pytest (synthetic)")
    d = result.as_dict()
    assert d["attack"] == "reconstruction" and d["kind"] == kind and d["command"] == "pytest (synthetic)"
    assert d["n"] == result.n == 6 and result.rate is None and result.chance is None
    for key in ("ssim", "psnr_db"):
        m = d[key]
        assert m["n"] == 6 and m["ci95"][0] <= m["mean"] <= m["ci95"][1] and math.isfinite(m["baseline"])
    assert -1 <= d["ssim"]["mean"] <= 1 and d["holdings"] == list(ReconstructionAttack.holdings)
    # the same numbers as the function's own summary (the planner's record)
    summary = result.raw.summary()
    assert d["ssim"]["mean"] == summary["ssim"]["mean"] and d["ssim"]["ci95"] == summary["ssim"]["ci95"]
    assert result.raw.samples.shape == (2, 3, SIZE, SIZE)


def test_reconstruction_attack_is_the_function_with_its_parameters():
    enclave = _enclave()
    aux, victims = _images(32, 3), _images(4, 4)  # SYNTHETIC
    with torch.no_grad():
        exposed = enclave(victims.float() / 255)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255

    a = ReconstructionAttack("regression", epochs=1, batch_size=16, seed=5).run(enclave, aux, exposed, victims, prep)
    b = reconstruction_attack(enclave, aux, exposed, victims, prep, kind="regression", epochs=1, batch_size=16,
                              seed=5)
    assert a.ssim.tolist() == b.ssim.tolist() and a.psnr.tolist() == b.psnr.tolist()


def test_a_view_without_the_exposed_features_is_refused_by_name():
    with pytest.raises(ValueError, match="exposed"):
        ReconstructionAttack(epochs=1).on(View(query=lambda x: x, aux_images=_images(4, 0), truth=_images(2, 0)))


def test_old_import_paths_are_the_same_objects():
    import veil.attacks.reconstruction as new
    from veil.partition import ReconstructionResult
    from veil.partition import reconstruction_attack as exported
    from veil.partition.attack import KINDS, query

    assert exported is new.reconstruction_attack and ReconstructionResult is new.ReconstructionResult
    assert KINDS == new.KINDS == ("cgan", "regression") and query is new.query


@dataclass
class Col:
    name: str
    column: str
    kind: str


SCHEMA = [Col("temp", "temp", "numeric"), Col("load", "load", "numeric"), Col("state=on", "state", "onehot"),
          Col("state=off", "state", "onehot")]


def _rows(n: int, seed: int) -> torch.Tensor:
    """SYNTHETIC table rows in the schema above: two numeric columns and a one-hot pair."""
    g = torch.Generator().manual_seed(seed)
    on = (torch.rand(n, generator=g) < 0.6).float()
    return torch.stack([torch.randn(n, generator=g) * 3 + 20, torch.rand(n, generator=g) * 10, on, 1 - on], dim=1)


@pytest.mark.parametrize("kwargs, name", [({"features": []}, "features"), ({"features": "temp"}, "features"),
                                          ({"features": [Col("x", "x", "text")]}, "features"),
                                          ({"features": SCHEMA, "epochs": 0}, "epochs"),
                                          ({"features": SCHEMA, "seed": True}, "seed")])
def test_tabular_decoder_rejects_a_bad_parameter_by_name(kwargs, name):
    with pytest.raises(AttackParameterError, match=name) as err:
        TabularDecoderAttack(**kwargs)
    assert err.value.parameter == name


def test_tabular_decoder_on_a_view_scores_every_column_beside_the_prior():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval()  # SYNTHETIC trusted partition
    aux, victims = _rows(300, 1), _rows(40, 2)
    with torch.no_grad():
        exposed = head(victims)
    view = View(query=head, aux_rows=aux, exposed=exposed, truth=victims)
    result = TabularDecoderAttack(SCHEMA, epochs=2).on(view, command="pytest (synthetic)")
    d = result.as_dict()
    assert d["attack"] == "tabular_decoder" and d["n"] == 40 and result.rate is None
    assert set(result.measures) == {"temp", "load", "state"}
    for m in result.measures.values():
        assert isinstance(m, Measure) and m.n == 40 and m.ci95[0] <= m.mean <= m.ci95[1] and m.baseline is not None
    assert d["features"]["state"]["kind"] == "categorical" and d["features"]["temp"]["kind"] == "numeric"
    assert d["state"]["mean"] == d["features"]["state"]["accuracy"]["rate"]
    assert d["temp"]["mean"] == pytest.approx(d["features"]["temp"]["mae"], rel=1e-5)
    # the same decoder and scoring as the partition's tabular experiment
    with torch.no_grad():
        aux_features = head(aux)
    rec = decode(aux_features, aux, exposed, 2, 0)
    assert feature_errors(SCHEMA, rec, victims, aux) == d["features"]


def test_both_attacks_are_registered_and_listed():
    from veil.attacks import registry
    from veil.cli.app import app

    known = registry.attacks()
    assert known["reconstruction"] is ReconstructionAttack and known["tabular_decoder"] is TabularDecoderAttack
    assert {"expectation", "known_plaintext", "leaked_pairs", "alignment", "cloud_model"} <= set(known)
    assert registry.parameters(ReconstructionAttack)["kind"] == "cgan"
    with pytest.raises(KeyError, match="known"):
        registry.get("nope")
    out = CliRunner().invoke(app, ["attack", "list"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    for name in known:
        assert name in out.output


def _budget_run(**budget):  # noqa: ANN003, ANN202
    enclave = _enclave()
    aux, victims = _images(32, 5), _images(4, 6)  # SYNTHETIC
    with torch.no_grad():
        exposed = enclave(victims.float() / 255)
    return ReconstructionAttack("regression", epochs=6, batch_size=16, keep=4, **budget).on(
        View(query=lambda x: enclave(x.float() / 255), aux_images=aux, exposed=exposed, truth=victims))


def test_budgets_stop_the_decoder_and_say_whether_it_converged():
    """Every learned attack records its loss curve; a plateau stops it (converged), a time budget may stop it while
    it is still improving (then not converged: its figures are not determined)."""
    full = _budget_run()
    assert full.details["epochs"] == 6 and len(full.details["loss_curve"]) == 6
    flat = _budget_run(plateau=10.0)  # any epoch "improves by less than 10x": a plateau as soon as allowed (3 epochs)
    assert flat.details["epochs"] == 3 and flat.details["converged"] is True
    timed = _budget_run(max_seconds=1e-9)  # the budget ends after the first epoch
    assert timed.details["epochs"] == 1 and timed.details["converged"] is False


def test_a_smaller_decoder_is_scored_at_the_victims_size():
    small = _budget_run(size=8)
    assert small.raw.samples.shape == (4, 3, SIZE, SIZE) and small.n == 4
    with pytest.raises(AttackParameterError, match="size"):
        ReconstructionAttack(size=0)
