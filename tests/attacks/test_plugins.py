"""A new obfuscation method and a new attack are each one module: registered at run time, both show up in
the CLI listings and in ``veil report``, through the one result format (SYNTHETIC tokens and run folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.attacks.synth import target_of, tokens_of
from tests.report.synth_run import make_run
from veil.attacks import registry as attacks
from veil.attacks.base import Attack, AttackResult, Measure, View
from veil.attacks.leakage import identity_leakage, pooled_embedder
from veil.cli.app import app
from veil.io import write_json
from veil.obfuscation import registry as methods
from veil.obfuscation.base import Obfuscation
from veil.report.collect import collect
from veil.report.html import render


class Negate(Obfuscation):
    """A toy method: every token times -1 (no secret at all)."""

    method = "toy"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return -tokens


class ToyAttack(Attack):
    """A toy attack: pooled cosine matching of the target features, no training."""

    name = "toy_attack"
    title = "toy attack (SYNTHETIC)"
    holdings = ("the owner's obfuscated test features (target)",)

    def on(self, view: View, command: str | None = None) -> AttackResult:
        (target,) = view.need("target")
        return self.result(identity_leakage(target, pooled_embedder()), command, method="toy", seconds=0.0)


@pytest.fixture()
def plugins():
    methods.register(methods.Method(
        name="toy", level="tokens", summary="negated tokens (a test's toy method)", secret="nothing",
        label=lambda _o: "Toy", label_pattern=r"Toy", build_random=lambda _g, _gen, _rng, _o: Negate(),
        build_keyless=lambda _g, _o: Negate()))
    attacks.register(ToyAttack)
    try:
        yield
    finally:
        methods.unregister("toy")
        attacks.unregister("toy_attack")


def test_toy_method_and_attack_are_listed_and_reported(plugins, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["methods"], terminal_width=250)
    assert listed.exit_code == 0 and "toy" in listed.output and "Toy" in listed.output, listed.output
    listed = runner.invoke(app, ["attack", "list"], terminal_width=250)
    assert listed.exit_code == 0 and "toy_attack" in listed.output, listed.output

    tokens, labels = tokens_of(8, 4, seed=1)
    result = ToyAttack().on(View(target=target_of(-tokens, labels)), command="pytest (SYNTHETIC)")
    run = make_run(tmp_path / "run", with_table2=False, with_stores=False)
    write_json(run / "attacks" / "toy_attack_toy.json", result.to_dict())

    data = collect(run)
    (row,) = [r for r in data.attacks if r.source == "toy_attack_toy.json"]
    assert (row.attack, row.method) == ("toy attack (SYNTHETIC)", "Toy")
    assert row.leakage.hits == result.leakage.rate.hits and row.leakage.n == result.leakage.rate.n
    html = render(data, "pytest")
    assert "toy attack (SYNTHETIC)" in html and "Toy" in html


def test_result_round_trips_through_its_dict() -> None:
    tokens, labels = tokens_of(6, 3, seed=2)
    result = ToyAttack().on(View(target=target_of(tokens, labels)), command="pytest")
    back = AttackResult.from_dict(result.to_dict())
    assert back.to_dict() == result.to_dict()
    assert (back.attack, back.method, back.rate, back.chance) == ("toy_attack", "toy", result.rate, result.chance)
    measured = AttackResult("recon", None, ("x",), None, {"kind": "cgan"}, None,
                            {"ssim": Measure.of("ssim", [0.2, 0.4, 0.6], baseline=0.1)})
    assert AttackResult.from_dict(measured.to_dict()).to_dict() == measured.to_dict()


def test_title_and_label_default_to_the_name_in_words() -> None:
    class Quiet(ToyAttack):
        name = "quiet_neighbour"

    assert (Quiet.title, Quiet.label) == ("quiet neighbour", "quiet neighbour")
    assert attacks.title("cloud_model") == "cloud model (its own RecNet)"
    assert attacks.label("cloud_model") == "cloud's own RecNet"
    assert attacks.title("gone_attack") == "gone attack"  # a result of an attack no longer registered


def test_vanilla_has_one_name(tmp_path: Path) -> None:
    """``none``, ``vanilla`` and ``Vanilla+PE`` are one method: its name, its run folder and its table label."""
    for text in ("none", "vanilla", "Vanilla+PE"):
        method = methods.lookup(text)
        assert (method.name, method.store, method.recnet, method.display()) == (
            "none", "store_vanilla", "recnet_vanilla.safetensors", "Vanilla+PE")
    assert methods.lookup("xnnh").store == "store_xnnh"
