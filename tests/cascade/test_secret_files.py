"""The designer's secret files (``cascade.json`` with the per-node session secrets, ``model.safetensors``) are
written through ``veil.secretfile.write_private``: mode 0600 from the first byte, never through a symlink."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from veil.cascade import checkpoint
from veil.cascade.runfiles import write_manifest as _write_private
from veil.errors import VeilError


def _write_cascade_json(path: Path) -> None:
    _write_private(path, {"cascade": [{"address": "127.0.0.1:1", "session": "00" * 32}]})


def _write_checkpoint(path: Path) -> None:
    ck = checkpoint.Checkpoint(step=3, states={0: {"p.weight": torch.ones(2, 2)}})
    checkpoint.write(path, ck, [{"kind": "linear", "in": 2, "out": 2}])


WRITERS: dict[str, Callable[[Path], None]] = {"cascade.json": _write_cascade_json,
                                              "model.safetensors": _write_checkpoint}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_secret_file_is_0600_even_over_a_world_readable_one(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"old")
    path.chmod(0o644)
    WRITERS[name](path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left beside it
    if name == "cascade.json":
        assert json.loads(path.read_text())["cascade"][0]["session"] == "00" * 32
    else:
        ck, layers = checkpoint.read(path)
        assert ck.step == 3 and torch.equal(ck.states[0]["p.weight"], torch.ones(2, 2)) and layers[0]["out"] == 2


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_planted_symlink_is_not_followed(name: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    victim.chmod(0o644)
    run = tmp_path / "run"
    run.mkdir()
    (run / name).symlink_to(victim)
    with pytest.raises(VeilError, match="symbolic link"):
        WRITERS[name](run / name)
    assert victim.read_bytes() == b"not yours" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert os.path.islink(run / name) and sorted(p.name for p in run.iterdir()) == [name]
