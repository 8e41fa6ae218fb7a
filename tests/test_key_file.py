"""The owner's key file: its exact fields, replacing it only when told, and each refusal's whole message (the
CLI prints them, and they tell the owner what to fix). Written for the keys.py mutation survivors
(bench/mutation.py). The keys are the published test vector of test_key_derivation.py and fresh random ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veil.keys import KEY_FORMAT, KEY_VERSION, KeyError_, OwnerKey

TEST_KEY = OwnerKey(bytes(range(32)))  # a published test vector, never a real key


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def refused(path: Path, message: str) -> None:
    with pytest.raises(KeyError_) as info:
        OwnerKey.load(path)
    assert str(info.value) == message


def test_the_key_file_holds_exactly_format_version_seed_and_fingerprint(tmp_path: Path) -> None:
    path = TEST_KEY.save(tmp_path / "k.key")
    assert json.loads(path.read_text()) == {"format": KEY_FORMAT, "version": KEY_VERSION,
                                            "seed": bytes(range(32)).hex(), "fingerprint": "ae4a599211a14e9e"}
    assert (KEY_FORMAT, KEY_VERSION) == ("veil-owner-key", 1)
    assert path.read_text().endswith("}\n")


def test_overwrite_replaces_an_existing_key_only_when_asked(tmp_path: Path) -> None:
    path = OwnerKey.generate().save(tmp_path / "k.key")
    with pytest.raises(KeyError_, match="refusing to overwrite"):
        TEST_KEY.save(path)
    assert TEST_KEY.save(path, overwrite=True) == path
    assert OwnerKey.load(path).seed == TEST_KEY.seed


def test_a_missing_key_file(tmp_path: Path) -> None:
    refused(tmp_path / "none.key", f"key file not found: {tmp_path / 'none.key'}")


def test_a_key_file_readable_by_others_is_named_as_a_key_file(tmp_path: Path) -> None:
    path = TEST_KEY.save(tmp_path / "k.key")
    path.chmod(0o644)
    refused(path, f"key file {path} has mode 0644: it is accessible by group or others and may have leaked; fix it "
                  f"with `chmod 600 {path}` (and replace the secret if others could have read it)")


@pytest.mark.parametrize("body, reason", [
    ("[1, 2]", "not a JSON object"),
    ('"veil-owner-key"', "not a JSON object"),
    ('{"format": "other", "seed": "00"}', "not a Veil owner key"),
    ('{"seed": "00"}', "not a Veil owner key"),
])
def test_a_key_file_of_the_wrong_shape_names_why(tmp_path: Path, body: str, reason: str) -> None:
    path = private(tmp_path / "bad.key", body)
    refused(path, f"{path} is not a valid Veil key file ({reason})")
