"""StoreWriter's life cycle: where it builds, when it flushes, how it swaps in, aborts and refuses (SYNTHETIC
rows). Written to kill the writer's surviving mutants in bench/results/mutation.json."""

from __future__ import annotations

import tempfile

import pytest
import torch

from veil.errors import VeilError
from veil.store import StoreWriter, open_store

INFO = {"num_classes": 3, "synthetic": True}


def _rows(n: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1).expand(n, 2, 3).clone(), \
        torch.arange(n, dtype=torch.int32) % 3


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_builds_beside_the_destination_in_a_hidden_temporary(tmp_path, monkeypatch):
    calls = []
    real = tempfile.mkdtemp

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    final = tmp_path / "a" / "b" / "store"  # parents made
    w = StoreWriter(final, INFO, shard_size=4)
    assert w.closed is False and w.dir.parent == final.parent and w.dir.name.startswith(".store.new-")
    assert calls == [{"prefix": ".store.new-", "dir": final.parent}]
    w.add(*_rows(3))
    w.close()
    assert w.closed is True and w.dir == final and _siblings(final) == []
    w2 = StoreWriter(final, INFO, overwrite=True)
    w2.add(*_rows(2))
    w2.close()
    assert calls[-1] == {"prefix": ".store.old-", "dir": final.parent}
    assert _siblings(final) == [] and open_store(final).manifest["rows"] == 2  # old store moved aside, then removed


def test_a_full_shard_is_written_as_soon_as_it_fills(tmp_path):
    w = StoreWriter(tmp_path / "s", INFO, shard_size=4)
    w.add(*_rows(3))
    assert not list(w.dir.glob("shard-*"))
    w.add(*_rows(1, 3))
    assert [p.name for p in w.dir.glob("shard-*")] == ["shard-00000.safetensors"] and w._buffered == 0
    w.add(*_rows(4, 4))
    w.add(*_rows(1, 8))
    w.close()
    store = open_store(tmp_path / "s")
    assert [s["rows"] for s in store.manifest["shards"]] == [4, 4, 1] and store.manifest["dtype"] == "float16"
    feats, labels = store.load_all()
    assert feats[:, 0, 0].tolist() == list(range(9)) and labels.dtype == torch.int64


def test_abort_removes_the_temporary_only_once(tmp_path):
    final = tmp_path / "s"
    w = StoreWriter(final, INFO)
    w.add(*_rows(2))
    temp = w.dir
    w.abort()
    assert not temp.exists() and not final.exists() and w.closed is True
    with pytest.raises(VeilError, match="^store writer already closed$"):
        w.close()
    w.abort()  # twice is harmless
    w2 = StoreWriter(final, INFO)
    w2.dir.rmdir()  # gone already: abort still succeeds
    w2.abort()
    w3 = StoreWriter(final, INFO)
    w3.add(*_rows(2))
    w3.close()
    w3.abort()  # after close: the finished store stays
    assert open_store(final).manifest["rows"] == 2


def test_context_manager_aborts_on_error_and_keeps_the_old_store(tmp_path):
    final = tmp_path / "s"
    with StoreWriter(final, INFO) as w:
        w.add(*_rows(2))
    assert not final.exists()  # leaving the block without close() writes nothing ...
    w.close()  # ... close() is the caller's
    before = {p.name: p.read_bytes() for p in final.iterdir()}
    with pytest.raises(RuntimeError), StoreWriter(final, INFO, overwrite=True) as w2:
        w2.add(*_rows(3))
        raise RuntimeError("crash")
    assert not w2.dir.exists() and _siblings(final) == []
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before


def test_refusals_name_the_way_out(tmp_path):
    final = tmp_path / "s"
    with pytest.raises(VeilError, match="^no rows were written to the store$"):
        StoreWriter(final, INFO).close()
    assert _siblings(final) == []
    w = StoreWriter(final, INFO)
    w.add(*_rows(1))
    w.close()
    with pytest.raises(VeilError, match=r"refusing to overwrite a store \(pass --force to replace it\)"):
        StoreWriter(final, INFO)
    file = tmp_path / "f"
    file.write_text("x")
    w = StoreWriter(file, INFO, overwrite=True)
    w.add(*_rows(1))
    with pytest.raises(VeilError, match="f exists and is not a directory"):
        w.close()
