import pytest
import torch

from tests.attacks import synth
from veil.attacks import AlignmentAttack
from veil.obfuscation.xnn import XNN


def _draw(n: int, seed: int) -> torch.Tensor:
    """Position-structured skewed tokens with no identity signal: same distribution for store and public."""
    pos, scale = synth.structure(0)
    g = torch.Generator().manual_seed(seed)
    return pos + scale * (torch.empty(n, *pos.shape).exponential_(generator=g) - 1)


@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
def test_moments_recover_permutation_and_matrix_without_pairs(kind):
    obf = XNN.random(synth.TOKENS, synth.DIM, kind, torch.Generator().manual_seed(5))
    test, labels = synth.tokens_of(10, 2, seed=3)
    r = AlignmentAttack(axes=4).run(obf(_draw(5000, 1)), _draw(5000, 2), synth.target_of(obf(test), labels))
    assert torch.equal(r.permutation, obf.perm)
    assert (r.matrix - obf.matrix).norm() / obf.matrix.norm() < 0.2


def test_whitened_pooled_tokens_identify_without_any_estimate():
    obf = XNN.random(synth.TOKENS, synth.DIM, "gaussian", torch.Generator().manual_seed(6))
    store, _ = synth.tokens_of(100, 4, seed=1)
    public, _ = synth.tokens_of(100, 4, seed=2)
    test, labels = synth.tokens_of(20, 3, seed=3)
    r = AlignmentAttack(axes=0).run(obf(store), public, synth.target_of(obf(test), labels))
    assert r.whitened_rate.value > 10 * r.chance
    assert r.rate.n == 40


@pytest.mark.parametrize("kwargs, name", [({"axes": -1}, "axes"), ({"identifier": "knn"}, "identifier"),
                                          ({"floor": 0}, "floor"), ({"refine_rounds": 1.5}, "refine_rounds")])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AlignmentAttack(**kwargs)


def test_store_of_another_shape_is_refused():
    test, labels = synth.tokens_of(5, 2, seed=3)
    with pytest.raises(ValueError, match="store_features"):
        AlignmentAttack().run(test[:, :3], test, synth.target_of(test, labels))
