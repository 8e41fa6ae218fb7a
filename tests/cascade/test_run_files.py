"""Issue 24, finding 4: ``veil cascade train --out`` lost trained runs and replaced earlier ones.

Before the fix: an existing ``--out`` was silently overwritten (model, ``cascade.json``, metrics), and
a disk that refused the final write gave a raw traceback, lost the model and the session secrets and
left the nodes bound. Now ``--out`` is checked before training, the files are written atomically, and
a failed final write keeps the state in a recovery file and releases the nodes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from typer.testing import CliRunner

from veil.cascade import checkpoint
from veil.cascade import constants as C
from veil.cascade import transport as transport_mod
from veil.cascade.inbox import Inbox
from veil.cascade.selection import probe
from veil.cli.cascade import app


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_out_holding_an_earlier_run_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "cascade.json").write_text("{}")
    r = run_cli("train", "--pool", str(tmp_path / "no-pool.json"), "--out", str(out))
    assert r.exit_code == 2 and "already holds a cascade run" in r.output and "--force" in r.output
    assert (out / "cascade.json").read_text() == "{}"


def test_unwritable_out_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("train", "--pool", str(tmp_path / "no-pool.json"), "--out", str(blocker / "run"))
    assert r.exit_code == 2 and "is not writable" in r.output and "nothing was trained" in r.output


def test_failed_final_write_keeps_a_recovery_file_and_releases_the_nodes(cluster, small_model, tmp_path,
                                                                         monkeypatch):
    nodes = cluster.alive()[:4]
    pool = cluster.sub_pool("runfiles", nodes)
    out = tmp_path / "full-disk" / "run"
    real_replace = os.replace

    def disk_full(src, dst, *a, **k):  # the disk holding --out fills up after training
        if str(dst).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", disk_full)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = run_cli("train", "--pool", str(pool), "--model", str(small_model), "--epochs", "1", "--loop-rate", "0",
                "--dummies", "0", "--out", str(out))
    monkeypatch.setattr(os, "replace", real_replace)
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert "No space left on device" in line and "nodes were released" in line
    kept = Path(line.split("are kept in ")[1].split(" and the")[0])
    assert kept.parent == out.parent and oct(kept.stat().st_mode)[-3:] == "600"
    ckpt, layers = checkpoint.read(kept)
    assert ckpt.step > 0 and len(layers) == 4
    assert not (out / "cascade.json").exists()
    tr = transport_mod.make("zmq")
    inbox = Inbox(tr, C.CELL_SIZES[0])
    try:  # a bound node refuses an open targeted probe; released ones answer it
        alive, dead = probe(inbox, [n.entry for n in nodes], 10.0)
    finally:
        inbox.close()
        tr.close()
    assert not dead and len(alive) == 4
