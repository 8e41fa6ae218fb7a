"""XNN's constructor and matrix builder on their own: what they refuse (with the whole message), what they
normalise (dtypes of the buffers), and what they record (kind, key fingerprint). Written for the xnn.py mutation
survivors (bench/mutation.py); SYNTHETIC parameters and the published test key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.obfuscation.xnn import MATRIX_KINDS, XNN, gaussian_to_matrix

TEST_KEY = OwnerKey(bytes(range(32)))  # a published test vector, never a real key


def test_an_unknown_matrix_kind_is_named() -> None:
    with pytest.raises(VeilError) as info:
        gaussian_to_matrix(torch.eye(3), "bogus")
    assert str(info.value) == "matrix kind must be one of ('orthogonal', 'gaussian'), got 'bogus'"
    assert MATRIX_KINDS == ("orthogonal", "gaussian")


def test_the_default_kind_is_orthogonal_and_is_what_the_store_records() -> None:
    x = XNN([1, 0, 2], torch.eye(4))
    assert x.kind == "orthogonal" and x.public_info() == {"method": "xnn", "matrix": "orthogonal"}
    assert XNN([0], torch.eye(1), "gaussian").public_info()["matrix"] == "gaussian"


def test_buffers_are_long_and_float32_whatever_they_are_given() -> None:
    x = XNN(np.array([2, 0, 1], dtype=np.int32), np.eye(4, dtype=np.float64))
    assert x.perm.dtype == torch.long and x.matrix.dtype == torch.float32
    assert x.perm.tolist() == [2, 0, 1] and torch.equal(x.matrix, torch.eye(4))
    y = XNN(torch.tensor([1, 0], dtype=torch.int16), torch.eye(2, dtype=torch.float16))
    assert y.perm.dtype == torch.long and y.matrix.dtype == torch.float32


@pytest.mark.parametrize("perm", [[0, 0, 1], [1, 2, 3], [0, 2], [-1, 0, 1]])
def test_a_permutation_that_is_not_one_is_refused(perm: list[int]) -> None:
    with pytest.raises(VeilError) as info:
        XNN(perm, torch.eye(2))
    assert str(info.value) == "XNN permutation is not a permutation"


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (4,), (2, 2, 2)])
def test_a_matrix_that_is_not_square_is_refused(shape: tuple) -> None:
    with pytest.raises(VeilError) as info:
        XNN([0, 1], torch.zeros(shape))
    assert str(info.value) == f"XNN matrix must be square, got {shape}"


def test_from_key_records_the_keys_fingerprint_and_random_records_none() -> None:
    x = XNN.from_key(TEST_KEY, 4, 3)
    assert x.key_fingerprint == TEST_KEY.fingerprint == "ae4a599211a14e9e"
    assert XNN([0, 1], torch.eye(2), fingerprint="f00d").key_fingerprint == "f00d"
    assert XNN.random(4, 3, generator=torch.Generator().manual_seed(0)).key_fingerprint is None


def test_the_orthogonal_matrix_is_q_of_the_qr_with_a_positive_diagonal() -> None:
    # the Haar sign fix: M = Q diag(sign(diag R)), so that M^T G = diag(sign) R is upper triangular with a positive
    # diagonal; unique for a full-rank G, whatever sign convention the QR routine has
    g = torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    m = gaussian_to_matrix(g, "orthogonal")
    assert torch.allclose(m.T @ m, torch.eye(6, dtype=torch.float64), atol=1e-12)
    r = m.T @ g
    assert torch.allclose(torch.tril(r, diagonal=-1), torch.zeros(6, 6, dtype=torch.float64), atol=1e-12)
    assert (torch.diagonal(r) > 0).all()
    assert torch.allclose(m @ r, g, atol=1e-12)
