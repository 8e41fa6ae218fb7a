import pytest
import torch

from tests.attacks.synth import target_of, tokens_of
from veil.attacks import KnownPlaintextAttack
from veil.attacks.known_plaintext import estimate
from veil.obfuscation.xnn import XNN


@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
def test_enough_pairs_recover_permutation_and_matrix_exactly(kind):
    obf = XNN.random(6, 12, kind, torch.Generator().manual_seed(3))
    clean, _ = tokens_of(10, 1, seed=1)
    perm, mat, residual = estimate(clean[:4], obf(clean[:4]), kind)  # 4 x 6 = 24 rows > 12 unknowns per column
    assert torch.equal(perm, obf.perm)
    assert torch.allclose(mat, obf.matrix, atol=1e-3)
    assert residual < 1e-4


def test_one_pair_does_not_determine_a_general_matrix():
    obf = XNN.random(6, 12, "gaussian", torch.Generator().manual_seed(3))
    clean, _ = tokens_of(10, 1, seed=1)
    _, mat, _ = estimate(clean[:1], obf(clean[:1]), "gaussian")
    assert not torch.allclose(mat, obf.matrix, atol=1e-2)


def test_curve_reaches_the_clean_leakage_once_the_key_is_recovered():
    obf = XNN.random(6, 12, "gaussian", torch.Generator().manual_seed(4))
    test, labels = tokens_of(25, 3, seed=2)
    target = target_of(obf(test), labels)
    leaked, _ = tokens_of(8, 1, seed=5)
    result = KnownPlaintextAttack(ks=(0, 1, 4), matrix="gaussian").run(leaked, obf(leaked), target)
    assert [p.k for p in result.points] == [0, 1, 4]
    last = result.points[-1]
    assert torch.equal(last.permutation, obf.perm)
    clean = KnownPlaintextAttack(ks=(0,)).run(leaked, leaked, target_of(test, labels))
    assert result.rate.hits == clean.rate.hits
    assert result.chance == pytest.approx(1 / 25)


@pytest.mark.parametrize("kwargs, name", [({"ks": (-1,)}, "ks"), ({"ks": ()}, "ks"), ({"matrix": "dense"}, "matrix"),
                                          ({"identifier": "svm"}, "identifier"), ({"rounds": 0}, "rounds")])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        KnownPlaintextAttack(**kwargs)


def test_asking_for_more_pairs_than_leaked_fails_before_any_work():
    test, labels = tokens_of(5, 2, seed=2)
    with pytest.raises(ValueError, match="pairs"):
        KnownPlaintextAttack(ks=(4,)).run(test[:2], test[:2], target_of(test, labels))


def test_recnet_identifier_needs_auxiliary_tokens():
    test, labels = tokens_of(5, 2, seed=2)
    with pytest.raises(ValueError, match="aux_tokens"):
        KnownPlaintextAttack(ks=(0,), identifier="recnet").run(test[:1], test[:1], target_of(test, labels))
