"""The keyed random stream against an independent re-computation of its documented algorithm.

``veil.keys`` promises: HKDF-SHA256 (info = label) then the ChaCha20 keystream; each request draws
from its own sub-label ``label#counter``; uniforms are 53-bit in the open interval (0, 1); the
permutation is Fisher-Yates with rejection sampling; normals are Box-Muller. A store and a RecNet made
with a key are only usable later if these stay bit for bit the same, so each is re-derived here from
the primitives, without calling the code under test's helpers.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veil.errors import VeilError
from veil.keys import KeyedStream, OwnerKey

SEED = bytes(range(100, 132))


def reference_bytes(seed: bytes, label: str, n: int) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(seed)
    return Cipher(algorithms.ChaCha20(key, b"\x00" * 16), mode=None).encryptor().update(b"\x00" * n)


def reference_uniform(seed: bytes, sublabel: str, n: int) -> np.ndarray:
    words = np.frombuffer(reference_bytes(seed, sublabel, 8 * n), dtype="<u8")
    return np.array([((int(w) >> 11) + 0.5) / 2 ** 53 for w in words])


def reference_permutation(words: list[int], n: int) -> list[int]:
    perm, it = list(range(n)), iter(words)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        while True:
            w = next(it)
            if w < 2 ** 64 - (2 ** 64 % bound):
                break
        j = w % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def test_derive_bytes_is_hkdf_then_chacha20():
    key = OwnerKey(SEED)
    assert key.derive_bytes("some/label", 100) == reference_bytes(SEED, "some/label", 100)
    assert key.derive_bytes("a", 32) != key.derive_bytes("b", 32)


def test_each_request_draws_from_its_own_sub_label():
    stream = OwnerKey(SEED).rng("lbl")
    first, second = stream.uniform(5), stream.uniform(5)
    assert np.array_equal(first, reference_uniform(SEED, "lbl#0", 5))
    assert np.array_equal(second, reference_uniform(SEED, "lbl#1", 5))


def test_uniforms_are_53_bit_and_inside_the_open_interval():
    u = OwnerKey(SEED).rng("u").uniform(1000)
    assert u.shape == (1000,) and u.dtype == np.float64
    assert np.array_equal(u, reference_uniform(SEED, "u#0", 1000))
    assert 0 < u.min() and u.max() < 1


@pytest.mark.parametrize("n", [2, 7, 50])
def test_permutation_is_fisher_yates_over_the_keyed_words(n):
    words = np.frombuffer(reference_bytes(SEED, "p#0", 16 * n), dtype="<u8").tolist()
    assert OwnerKey(SEED).rng("p").permutation(n).tolist() == reference_permutation(words, n)


class Scripted(KeyedStream):
    """A stream whose words are given, batch by batch, to reach rejection and refill."""

    def __init__(self, batches: list[list[int]]) -> None:
        super().__init__(OwnerKey(SEED), "scripted")
        self.batches = batches

    def _bytes(self, n: int) -> bytes:
        words = self.batches.pop(0)
        assert 8 * len(words) == n, (len(words), n)
        return np.array(words, dtype="<u8").tobytes()


def test_rejection_sampling_discards_the_biased_tail():
    top = 2 ** 64 - 1  # >= the limit for bound 3 (2**64 % 3 == 1), so it must be rejected
    limit3 = 2 ** 64 - 1  # the first word rejected for bound 3
    words = [top, 7, limit3 - 1, 1, 0, 0]  # i=2: reject top, take 7 -> j=1: [0,2,1]; i=1: limit3-1 -> j=0: [2,0,1]
    perm = Scripted([words]).permutation(3)
    assert perm.tolist() == reference_permutation(words, 3) == [2, 0, 1]


def test_exhausted_words_are_refilled_from_the_next_sub_label():
    top = 2 ** 64 - 1
    first = [top - 1, top, top, top]  # n=2: bound 2 divides 2**64, nothing is rejected: j = (top - 1) % 2 = 0
    assert Scripted([first]).permutation(2).tolist() == [1, 0]
    # bound 3 rejects every `top`; 6 words are requested for n=3, all rejected, then a refill supplies j
    rejected = [top] * 6
    refill = [4, 1, 0, 0, 0, 0]  # i=2: j = 4 % 3 = 1; i=1: j = 1 % 2 = 1
    stream = Scripted([rejected, refill])
    assert stream.permutation(3).tolist() == [0, 2, 1]
    assert stream.batches == []


@pytest.mark.parametrize("shape", [(7,), (4, 6)])
def test_normals_are_box_muller_of_two_keyed_uniform_draws(shape):
    n = int(np.prod(shape))
    half = (n + 1) // 2
    u1, u2 = reference_uniform(SEED, "z#0", half), reference_uniform(SEED, "z#1", half)
    r = np.sqrt(-2 * np.log(u1))
    expected = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n].reshape(shape)
    assert np.array_equal(OwnerKey(SEED).rng("z").normal(shape), expected)


def test_seed_length_is_checked_and_named():
    with pytest.raises(VeilError, match="owner key seed must be 32 bytes, got 31"):
        OwnerKey(bytes(31))
    a, b = OwnerKey.generate(), OwnerKey.generate()
    assert len(a.seed) == 32 and a.seed != b.seed


def test_fingerprint_is_sha256_of_a_derived_label_not_of_the_seed():
    import hashlib

    key = OwnerKey(SEED)
    expected = hashlib.sha256(reference_bytes(SEED, "veil/fingerprint", 32)).hexdigest()[:16]
    assert key.fingerprint == expected and len(key.fingerprint) == 16
    assert hashlib.sha256(SEED).hexdigest()[:16] != key.fingerprint
