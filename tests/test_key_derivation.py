"""Known answers for the key derivations, and the stream's rejection sampling at its boundary.

Pinned outputs for one fixed (public, test-only) seed: a change to any label, counter, default size or
argument order in ``veil.keys`` / ``veil.obfuscation.keyed`` changes what an existing key file means (its
stores, models and label maps no longer match), so it must fail here. These also kill the mutants the
mutation campaign found surviving (bench/mutation.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veil.keys import KeyedStream, OwnerKey
from veil.obfuscation.keyed import label_map, neuracrypt_from_key, xnn_from_key
from veil.obfuscation.neuracrypt import NeuraCrypt
from veil.obfuscation.xnn import XNN

TEST_KEY = OwnerKey(bytes(range(32)))  # a published test vector, never a real key


def test_known_answers() -> None:
    assert TEST_KEY.fingerprint == "ae4a599211a14e9e"
    assert TEST_KEY.derive_bytes("veil/test#0", 8).hex() == "cf44ab3d43b7ce51"
    assert np.allclose(TEST_KEY.rng("veil/test").uniform(3), [0.31956048385260966, 0.6867509317464979,
                                                               0.7635536158646794], rtol=0, atol=1e-15)
    assert TEST_KEY.rng("veil/test").permutation(12).tolist() == [0, 5, 4, 7, 2, 9, 8, 11, 6, 1, 10, 3]
    assert label_map(TEST_KEY, ["carol", "alice", "bob", "dave", "erin", "bob"]) == {
        "alice": 0, "bob": 2, "carol": 3, "dave": 4, "erin": 1}
    x = xnn_from_key(TEST_KEY, 6, 4, "gaussian")
    assert x.kind == "gaussian" and x.perm.tolist() == [5, 0, 2, 4, 1, 3]
    assert torch.allclose(x.matrix[0], torch.tensor([-0.26042, -0.23599, 0.30647, 0.11588]), atol=2e-5)


def test_each_draw_of_a_stream_has_its_own_counter() -> None:
    s = TEST_KEY.rng("veil/test")
    draws = [s._bytes(16) for _ in range(4)]
    assert draws == [TEST_KEY.derive_bytes(f"veil/test#{i}", 16) for i in range(4)]
    assert len(set(draws)) == 4


def _words(stream: KeyedStream, words: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(n: int) -> bytes:
        padded = (words + [0] * (n // 8))[:n // 8]
        return np.array(padded, dtype="<u8").tobytes()

    monkeypatch.setattr(stream, "_bytes", fake)


@pytest.mark.parametrize("words, expected", [
    # bound 3: limit = 2**64 - (2**64 % 3) = 2**64 - 1, so 2**64 - 2 is accepted (j = 2, no swap) ...
    ([2**64 - 2, 0], [1, 0, 2]),
    # ... and 2**64 - 1 is rejected (it would bias j towards 0), the next word (1) is used instead
    ([2**64 - 1, 1, 0], [2, 0, 1]),
])
def test_permutation_rejection_limit(words: list[int], expected: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    stream = TEST_KEY.rng("veil/test")
    _words(stream, words, monkeypatch)
    assert stream.permutation(3).tolist() == expected


def test_neuracrypt_from_key_defaults_and_arguments() -> None:
    nc = neuracrypt_from_key(TEST_KEY, 32)
    assert nc.patch == 16 and nc.depth == 2 and tuple(nc.w_patch.shape) == (256, 3, 16, 16)
    assert nc.key_fingerprint == TEST_KEY.fingerprint
    assert torch.allclose(nc.w_mix0[0, :3], torch.tensor([-0.11872, -0.04679, -0.01414]), atol=2e-5)
    small = neuracrypt_from_key(TEST_KEY, 32, patch=8, dim=32, depth=3)
    ref = NeuraCrypt.from_key(TEST_KEY, 32, 8, 32, 3)
    assert small.patch == 8 and small.depth == 3 and tuple(small.w_patch.shape) == (32, 3, 8, 8)
    assert tuple(small.w_pos.shape) == (1, 32, 4, 4)
    assert all(torch.equal(a, b) for a, b in zip(small.buffers(), ref.buffers(), strict=True))


def test_xnn_random_uses_its_generator_and_kind() -> None:
    a = XNN.random(8, 16, "gaussian", torch.Generator().manual_seed(3))
    b = XNN.random(8, 16, "gaussian", torch.Generator().manual_seed(3))
    c = XNN.random(8, 16, "gaussian", torch.Generator().manual_seed(4))
    assert torch.equal(a.perm, b.perm) and torch.equal(a.matrix, b.matrix)
    assert not torch.equal(a.matrix, c.matrix)
    torch.manual_seed(0)  # the global generator must not be what it draws from
    d = XNN.random(8, 16, "gaussian", torch.Generator().manual_seed(3))
    assert torch.equal(a.perm, d.perm) and torch.equal(a.matrix, d.matrix)
    assert a.kind == "gaussian" and XNN.random(8, 16).kind == "orthogonal"


def test_xnn_default_kind_and_dtype_follow_the_tokens() -> None:
    x = XNN.from_key(TEST_KEY, 6, 4)
    assert x.kind == "orthogonal" and torch.allclose(x.matrix @ x.matrix.T, torch.eye(4), atol=1e-5)
    assert torch.equal(x.matrix, xnn_from_key(TEST_KEY, 6, 4, "orthogonal").matrix)
    tokens = torch.randn(2, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = x(tokens)  # the matrix follows the tokens' dtype
    assert out.dtype == torch.float64
    assert torch.allclose(out, tokens[:, x.perm] @ x.matrix.double())
