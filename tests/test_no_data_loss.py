"""Issue 12, finding 4: failures lose nothing already saved, and secret files are written and read safely.

Each test reproduces one reported failure: ``obfuscate --force`` deleting the old store before a run
that then fails, ``train`` overwriting a RecNet unasked, a key written through a symlink planted at
the old fixed temporary name, and a world-readable key used without a word.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veil.cli.app import app
from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.secretfile import read_private, write_private

runner = CliRunner()


def run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path: equal digests mean byte-identical trees."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(workspace: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nodataloss") / "store"
    code, text = run("obfuscate", "--split", workspace["split"], "--extractor", workspace["extractor"], "--key",
                     workspace["key"], "--data", workspace["data"], "--out", out, "--no-flips")
    assert code == 0, text
    return out


def test_failed_force_run_leaves_the_old_store_byte_identical(workspace, store, tmp_path):
    """A corrupt image mid-run under --force: the old store survives untouched, no half-built store is left."""
    data = tmp_path / "data"
    shutil.copytree(workspace["data"], data)
    owner_train = json.loads(Path(workspace["split"]).read_text())["groups"]["owner_train"]
    victim = sorted((data / sorted(owner_train)[-1]).iterdir())[-1]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    before = tree_digest(store)
    code, text = run("obfuscate", "--split", workspace["split"], "--extractor", workspace["extractor"], "--key",
                     workspace["key"], "--data", data, "--out", store, "--no-flips", "--force")
    assert code == 2, text
    assert tree_digest(store) == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["store"]  # no .store.new-* left behind


def test_successful_force_run_replaces_the_store(workspace, store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (copy / "stale-file").write_text("from the old store")
    code, text = run("obfuscate", "--split", workspace["split"], "--extractor", workspace["extractor"], "--key",
                     workspace["key"], "--data", workspace["data"], "--out", copy, "--force")
    assert code == 0, text
    assert not (copy / "stale-file").exists() and (copy / "manifest.json").is_file()
    assert json.loads((copy / "manifest.json").read_text())["flip_copies"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_train_refuses_to_overwrite_a_recnet_without_force(store, tmp_path):
    out = tmp_path / "recnet.safetensors"
    out.write_bytes(b"an existing model the user wants to keep")
    code, text = run("train", "--store", store, "--out", out, "--epochs", "1")
    assert code == 2 and "refusing to overwrite" in text and "--force" in text
    assert out.read_bytes() == b"an existing model the user wants to keep"


def test_key_new_does_not_follow_a_symlink_planted_at_the_old_temp_name(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the attacker reads or clobbers this file")
    key_path = tmp_path / "owner.key"
    os.symlink(victim, tmp_path / "owner.key.tmp")  # the fixed temporary name the old code used
    code, text = run("key", "new", "--out", key_path)
    assert code == 0, text
    assert victim.read_text() == "the attacker reads or clobbers this file"
    assert not key_path.is_symlink() and stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert OwnerKey.load(key_path).seed.hex() in key_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owner.key", "owner.key.tmp", "victim.txt"]


def test_key_is_not_written_through_a_symlink_at_its_own_name(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / "owner.key")
    code, text = run("key", "new", "--out", tmp_path / "owner.key", "--force")
    assert code == 2 and "symbolic link" in text
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_readable_by_group_or_others_is_refused_with_the_fix(tmp_path, mode):
    path = OwnerKey.generate().save(tmp_path / "owner.key")
    path.chmod(mode)
    code, text = run("key", "show", path)
    assert code == 2 and f"chmod 600 {path}" in text.replace("\n", "")
    with pytest.raises(VeilError, match="group or others"):
        OwnerKey.load(path)
    path.chmod(0o600)
    assert OwnerKey.load(path)


def test_write_private_refuses_to_overwrite_unless_asked(tmp_path):
    p = write_private(tmp_path / "s", b"one")
    with pytest.raises(VeilError, match="refusing to overwrite"):
        write_private(p, b"two", overwrite=False)
    assert read_private(p) == b"one"
    write_private(p, b"three")
    assert read_private(p) == b"three" and stat.S_IMODE(p.stat().st_mode) == 0o600
