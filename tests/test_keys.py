import json
import stat

import numpy as np
import pytest

from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.obfuscation.keyed import label_map, xnn_from_key


def test_key_file_is_private_and_round_trips(tmp_path):
    key = OwnerKey.generate()
    path = key.save(tmp_path / "k.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = OwnerKey.load(path)
    assert again.seed == key.seed and again.fingerprint == key.fingerprint


def test_repr_never_shows_the_secret():
    key = OwnerKey.generate()
    assert key.seed.hex() not in repr(key) and key.seed.hex() not in str(key)
    assert key.fingerprint in repr(key)


def test_refuses_to_overwrite_a_key(tmp_path):
    OwnerKey.generate().save(tmp_path / "k.key")
    with pytest.raises(VeilError, match="refusing to overwrite"):
        OwnerKey.generate().save(tmp_path / "k.key")


def test_corrupt_key_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.key").write_text("not json")
    (tmp_path / "bad.key").chmod(0o600)
    with pytest.raises(VeilError, match="not a valid Veil key"):
        OwnerKey.load(tmp_path / "bad.key")
    good = OwnerKey.generate().save(tmp_path / "good.key")
    body = json.loads(good.read_text())
    body["seed"] = "00" * 32
    (tmp_path / "tampered.key").write_text(json.dumps(body))
    (tmp_path / "tampered.key").chmod(0o600)
    with pytest.raises(VeilError, match="fingerprint does not match"):
        OwnerKey.load(tmp_path / "tampered.key")


def test_same_key_same_transform_bit_for_bit():
    key = OwnerKey(bytes(range(32)))
    a, b = xnn_from_key(key, 17, 64), xnn_from_key(OwnerKey(bytes(range(32))), 17, 64)
    assert np.array_equal(a.perm.numpy(), b.perm.numpy())
    assert a.matrix.numpy().tobytes() == b.matrix.numpy().tobytes()
    assert label_map(key, ["x", "y", "z"]) == label_map(OwnerKey(bytes(range(32))), ["z", "y", "x"])


def test_different_keys_give_different_transforms():
    a, b = xnn_from_key(OwnerKey.generate(), 17, 64), xnn_from_key(OwnerKey.generate(), 17, 64)
    assert not np.allclose(a.matrix.numpy(), b.matrix.numpy())


def test_keyed_permutation_is_uniform_enough():
    # Position of element 0 after 600 keyed permutations of 6: each slot should get ~1/6.
    key = OwnerKey(bytes(32))
    firsts = [int(np.argmax(key.rng(f"t/{i}").permutation(6) == 0)) for i in range(600)]
    counts = np.bincount(firsts, minlength=6)
    assert counts.min() > 60 and counts.max() < 140


def test_keyed_normals_have_unit_variance():
    z = OwnerKey(bytes(32)).rng("n").normal((200, 200))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
