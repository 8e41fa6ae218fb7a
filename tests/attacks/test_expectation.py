import pytest
import torch

from tests.attacks.synth import target_of, tokens_of
from veil.attacks import AttackRecNetConfig, ExpectationAttack

FAST = AttackRecNetConfig(epochs=6, batch_size=64, dim=32, depth=1, num_heads=2, emb_dim=32, lr=0.1)


def test_unobfuscated_store_is_identified_well_above_chance():
    aux, aux_labels = tokens_of(60, 4, seed=1)
    test, labels = tokens_of(20, 3, seed=2)
    target = target_of(test, labels)
    r = ExpectationAttack("none", recnet=FAST).run(aux, aux_labels, target)
    assert r.rate.n == 40
    assert r.rate.value > 5 * r.chance, r.rate
    assert r.aux_identities == 60


def test_xnn_mode_trains_under_fresh_parameters_and_reports_a_rate(monkeypatch):
    import veil.attacks.expectation as expectation

    aux, aux_labels = tokens_of(30, 4, seed=1)
    test, labels = tokens_of(10, 3, seed=2)
    seen: list[torch.Tensor] = []
    fit = expectation.fit_recnet

    def spy(tokens, labels_, cfg, transform, device):
        probe = torch.ones(1, *tokens.shape[1:])

        def recorded(x):
            seen.append(transform(probe))  # the parameters drawn for this batch, applied to a fixed probe
            return transform(x)

        return fit(tokens, labels_, cfg, recorded, device)

    monkeypatch.setattr(expectation, "fit_recnet", spy)
    r = ExpectationAttack("xnn", "gaussian", recnet=FAST, seed=3).run(aux, aux_labels, target_of(test, labels))
    # 120 aux rows, batch 64: at least one draw per batch per epoch, each a different P and M
    assert len(seen) >= FAST.epochs * (120 // 64), len(seen)
    assert all(not torch.allclose(a, b) for a, b in zip(seen, seen[1:], strict=False))
    assert r.rate.n == 20 and r.rate.value == r.rate.hits / 20 and r.chance == pytest.approx(0.1)
    assert r.obfuscation == "xnn" and r.matrix == "gaussian" and r.aux_rows == 120 and r.aux_identities == 30


def test_fresh_parameters_differ_between_batches():
    transform = ExpectationAttack("xnn", seed=0)._random_obfuscation(6, 12)
    x = torch.randn(2, 6, 12)
    assert not torch.allclose(transform(x), transform(x))


@pytest.mark.parametrize("kwargs, name", [({"obfuscation": "rot13"}, "obfuscation"), ({"matrix": "dense"}, "matrix"),
                                          ({"seed": -1}, "seed"), ({"recnet": {"epochs": 1}}, "recnet")])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ExpectationAttack(**kwargs)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", -1.0), ("num_heads", 3)])
def test_bad_recnet_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AttackRecNetConfig(**{field: value})


def test_aux_of_another_shape_is_refused():
    test, labels = tokens_of(5, 2, seed=2)
    with pytest.raises(ValueError, match="aux_tokens"):
        ExpectationAttack(recnet=FAST).run(test[:, :3], labels, target_of(test, labels))
