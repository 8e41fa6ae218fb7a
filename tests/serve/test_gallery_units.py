"""veil.serve.gallery called directly (no server): the lock, every refusal of a bad gallery file on its own, what
is persisted (0600, atomically, only after the checks), and identify's answers. Written for the mutation campaign
(bench/mutation.py); SYNTHETIC embeddings of dimension 4."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from veil.errors import VeilError
from veil.serve.gallery import FORMAT, Gallery, GalleryLocked

DIM, DIGEST = 4, "recnet-digest"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "g.safetensors"


@pytest.fixture
def gallery(path: Path):
    g = Gallery(path, DIM, DIGEST)
    yield g
    g.close()


def e(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def write_raw(path: Path, embeddings: torch.Tensor | None = None, **meta: str) -> None:
    tensors = {} if embeddings is None else {"embeddings": embeddings}
    if not tensors:
        tensors = {"other": torch.zeros(1)}
    path.write_bytes(st_save(tensors, metadata={"format": FORMAT, "recnet": DIGEST, **meta}))
    os.chmod(path, 0o600)


def refuses(path: Path, message: str) -> None:
    with pytest.raises(VeilError) as info:
        Gallery(path, DIM, DIGEST)
    assert str(info.value) == message
    # the failed open released its lock: the same file opens again once it is repaired
    write_raw(path, torch.zeros(0, DIM))
    Gallery(path, DIM, DIGEST).close()


def stored(path: Path) -> tuple[torch.Tensor, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("embeddings"), f.metadata()


# --- construction and the lock ------------------------------------------------------------------------------
def test_a_new_gallery_is_empty_and_writes_nothing(gallery: Gallery, path: Path) -> None:
    assert len(gallery) == 0 and gallery.names == [] and gallery.owners == {}
    assert gallery.embeddings.shape == (0, DIM)
    assert (gallery.emb_dim, gallery.recnet_digest, gallery.path) == (DIM, DIGEST, path)
    assert not path.exists()
    assert gallery.identify(e([1, 0, 0, 0], [0, 1, 0, 0])) == [{"name": None, "score": None}] * 2
    assert gallery.listing() == []


def test_the_lock_file_sits_beside_the_gallery_private_and_parents_are_made(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "g.safetensors"
    g = Gallery(deep, DIM, DIGEST)
    lock = deep.with_name("g.safetensors.lock")
    assert lock.is_file() and stat.S_IMODE(lock.stat().st_mode) == 0o600
    g.close()


def test_a_second_gallery_on_the_same_file_is_refused_until_the_first_closes(gallery: Gallery, path: Path) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(GalleryLocked) as info:
        Gallery(path, DIM, DIGEST)
    lock = path.with_name(path.name + ".lock")
    assert str(info.value) == (f"gallery {path} is in use by another server (lock {lock} is held); "
                               "stop that server or give this one another --gallery")
    assert isinstance(info.value, VeilError)
    assert len(os.listdir("/proc/self/fd")) == fds  # the refused open closed its descriptor
    gallery.close()
    gallery.close()  # idempotent
    Gallery(path, DIM, DIGEST).close()


def test_a_lock_path_that_cannot_be_opened_is_a_veil_error(path: Path, tmp_path: Path) -> None:
    lock = path.with_name(path.name + ".lock")
    lock.symlink_to(tmp_path / "elsewhere")  # O_NOFOLLOW: a planted link is not followed
    with pytest.raises(VeilError, match=rf"^cannot open the gallery lock {lock}: Too many levels of symbolic links$"):
        Gallery(path, DIM, DIGEST)
    assert not (tmp_path / "elsewhere").exists()


# --- loading: each refusal on its own --------------------------------------------------------------------------
def test_a_file_that_is_not_safetensors(path: Path) -> None:
    path.write_bytes(b"not a gallery")
    with pytest.raises(VeilError, match=rf"^gallery {path} is not a readable safetensors file \(.+\)$"):
        Gallery(path, DIM, DIGEST)
    write_raw(path, torch.zeros(0, DIM))
    Gallery(path, DIM, DIGEST).close()  # the refusal above released the lock


def test_wrong_format_tag(path: Path) -> None:
    path.write_bytes(st_save({"embeddings": torch.zeros(0, DIM)}, metadata={"format": "other", "recnet": DIGEST}))
    refuses(path, f"{path} is not a Veil gallery file")
    path.write_bytes(st_save({"embeddings": torch.zeros(0, DIM)}))  # no metadata at all
    refuses(path, f"{path} is not a Veil gallery file")


def test_another_recnet(path: Path) -> None:
    path.write_bytes(st_save({"embeddings": torch.zeros(0, DIM)}, metadata={"format": FORMAT, "recnet": "old"}))
    refuses(path, f"gallery {path} was enrolled with another RecNet (digest old, server has {DIGEST}); "
                  "use a new --gallery")


@pytest.mark.parametrize("names, owners", [('"alice"', "{}"), ('[1]', "{}"), ('["a", 2]', "{}"),
                                           ('["a"]', '["a"]'), ('["a"]', '"a"')],
                         ids=["names-str", "names-int", "names-mixed", "owners-list", "owners-str"])
def test_metadata_of_the_wrong_type(path: Path, names: str, owners: str) -> None:
    write_raw(path, torch.ones(1, DIM), names=names, owners=owners)
    refuses(path, f"gallery {path} has corrupt metadata (names must be a list of strings and owners an object)")


def test_metadata_that_is_not_json(path: Path) -> None:
    write_raw(path, torch.ones(1, DIM), names="[", owners="{}")
    with pytest.raises(VeilError, match=rf"^gallery {path} has corrupt metadata \(Expecting value: .+\)$"):
        Gallery(path, DIM, DIGEST)
    write_raw(path, torch.ones(1, DIM), names='["a"]', owners="{")
    refuses(path, f"gallery {path} has corrupt metadata (Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1))")


def test_names_and_owners_default_to_empty(path: Path) -> None:
    write_raw(path, torch.zeros(0, DIM))  # format and recnet only
    g = Gallery(path, DIM, DIGEST)
    assert g.names == [] and g.owners == {} and g.embeddings.shape == (0, DIM)
    g.close()
    write_raw(path, torch.ones(1, DIM), names='["a"]')  # names without owners: nobody enrolled them by name
    g = Gallery(path, DIM, DIGEST)
    assert g.names == ["a"] and g.owners == {"a": None} and "a" in g
    g.close()


@pytest.mark.parametrize("embeddings, names, shown", [
    (None, "[]", "None"), (torch.ones(DIM), '["a"]', f"torch.Size([{DIM}])"),
    (torch.ones(1, DIM + 1), '["a"]', f"torch.Size([1, {DIM + 1}])"),
    (torch.ones(2, DIM), '["a"]', "torch.Size([2, 4])"), (torch.ones(1, DIM), '["a", "b"]', "torch.Size([1, 4])")],
    ids=["missing", "1d", "dim", "fewer-names", "more-names"])
def test_inconsistent_embeddings(path: Path, embeddings, names: str, shown: str) -> None:
    write_raw(path, embeddings, names=names)
    n = len(json.loads(names))
    refuses(path, f"gallery {path} is inconsistent (embeddings {shown}, {n} names)")


def test_a_loaded_gallery_is_float32_and_owners_only_of_its_names(path: Path) -> None:
    write_raw(path, torch.eye(DIM, dtype=torch.float64)[:2], names='["a", "b"]',
              owners='{"a": "alice", "b": null, "ghost": "mallory"}')
    g = Gallery(path, DIM, DIGEST)
    assert g.embeddings.dtype == torch.float32 and torch.equal(g.embeddings, torch.eye(DIM)[:2])
    assert g.owners == {"a": "alice", "b": None} and g.owner_of("a") == "alice" and g.owner_of("ghost") is None
    assert "ghost" not in g and "b" in g and len(g) == 2
    g.close()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_an_old_world_readable_gallery_is_made_private(path: Path, mode: int) -> None:
    write_raw(path, torch.zeros(0, DIM))
    os.chmod(path, mode)
    Gallery(path, DIM, DIGEST).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_gallery_keeps_its_mode(path: Path, mode: int) -> None:
    write_raw(path, torch.zeros(0, DIM))
    os.chmod(path, mode)  # only group and other bits are taken away: a read-only file is not made writable
    Gallery(path, DIM, DIGEST).close()
    assert stat.S_IMODE(path.stat().st_mode) == mode


# --- enrol, delete, listing ------------------------------------------------------------------------------------
def test_enrol_normalises_persists_privately_and_returns_the_size(gallery: Gallery, path: Path) -> None:
    assert gallery.enrol("alice", e([3, 4, 0, 0], [0, 0, 0, 2]), client="c1") == 2
    assert gallery.enrol("bob", e([0, 0.5, 0, 0])) == 3  # a short but nonzero row is kept
    assert gallery.names == ["alice", "alice", "bob"]
    assert torch.allclose(gallery.embeddings, e([0.6, 0.8, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    emb, meta = stored(path)
    assert torch.equal(emb, gallery.embeddings)
    assert meta == {"format": FORMAT, "recnet": DIGEST, "names": json.dumps(["alice", "alice", "bob"]),
                    "owners": json.dumps({"alice": "c1", "bob": None})}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # renamed into place


def test_the_first_enroller_stays_the_owner(gallery: Gallery) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0]), client="first")
    gallery.enrol("alice", e([0, 1, 0, 0]), client="second")
    assert gallery.owner_of("alice") == "first" and len(gallery) == 2


def test_a_reopened_gallery_has_every_acknowledged_enrolment(gallery: Gallery, path: Path) -> None:
    gallery.enrol("alice", e([1, 2, 3, 4]), client="c1")
    gallery.enrol("bob", e([4, 3, 2, 1]))
    gallery.close()
    again = Gallery(path, DIM, DIGEST)
    assert again.names == ["alice", "bob"] and again.owners == {"alice": "c1", "bob": None}
    assert torch.equal(again.embeddings, gallery.embeddings)
    again.close()


@pytest.mark.parametrize("bad, message", [
    (torch.ones(DIM), f"embeddings must be (n, {DIM}), got ({DIM},)"),
    (torch.ones(2, DIM + 1), f"embeddings must be (n, {DIM}), got (2, {DIM + 1})"),
    (torch.ones(1, 2, DIM), f"embeddings must be (n, {DIM}), got (1, 2, {DIM})"),
    (e([1, float("nan"), 0, 0]), "the features give a non-finite embedding; nothing was stored"),
    (e([1, 0, 0, 0], [float("inf"), 0, 0, 0]), "the features give a non-finite embedding; nothing was stored"),
    (e([1, 0, 0, 0], [0, 0, 0, 0]), "the features give a zero embedding; nothing was stored"),
    (e([1e-12, 0, 0, 0]), "the features give a zero embedding; nothing was stored"),  # the bound is inclusive
], ids=["1d", "dim", "3d", "nan", "inf", "zero-row", "at-bound"])
def test_enrol_refuses_and_stores_nothing(gallery: Gallery, path: Path, bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError) as info:
        gallery.enrol("x", bad)
    assert str(info.value) == message
    assert len(gallery) == 0 and "x" not in gallery and not path.exists()


def test_just_above_the_zero_bound_is_enrolled(gallery: Gallery) -> None:
    assert gallery.enrol("tiny", e([1e-11, 0, 0, 0])) == 1
    assert torch.allclose(gallery.embeddings, e([1, 0, 0, 0]))


def test_memory_changes_only_once_the_file_is_written(gallery: Gallery, path: Path, tmp_path: Path) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0]))
    path.unlink()
    path.symlink_to(tmp_path / "target")  # write_private refuses to write through a link
    with pytest.raises(VeilError, match="symbolic link"):
        gallery.enrol("bob", e([0, 1, 0, 0]))
    with pytest.raises(VeilError, match="symbolic link"):
        gallery.delete("alice")
    assert gallery.names == ["alice"] and gallery.owners == {"alice": None} and len(gallery.embeddings) == 1


def test_delete_removes_every_entry_and_its_owner(gallery: Gallery, path: Path) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0], [0, 1, 0, 0]), client="c1")
    gallery.enrol("bob", e([0, 0, 1, 0]), client="c2")
    gallery.enrol("alice", e([0, 0, 0, 1]))
    assert gallery.delete("alice") == 3
    assert gallery.names == ["bob"] and gallery.owners == {"bob": "c2"} and "alice" not in gallery
    assert torch.equal(gallery.embeddings, e([0, 0, 1, 0]))
    emb, meta = stored(path)
    assert torch.equal(emb, e([0, 0, 1, 0])) and json.loads(meta["names"]) == ["bob"]
    assert json.loads(meta["owners"]) == {"bob": "c2"}


def test_deleting_an_absent_name_changes_nothing(gallery: Gallery, path: Path) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0]))
    before = path.stat().st_ino
    assert gallery.delete("nobody") == 0
    assert path.stat().st_ino == before  # not rewritten
    assert gallery.names == ["alice"]


def test_listing_counts_entries_per_name_with_owner_and_finiteness(gallery: Gallery) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0], [0, 1, 0, 0]), client="c1")
    gallery.enrol("bob", e([0, 0, 1, 0]))
    gallery.embeddings = torch.cat([gallery.embeddings, torch.full((1, DIM), float("nan")), e([0, 0, 0, 1])])
    gallery.names += ["carol", "carol"]  # one poisoned and one good row, as an older server could store them
    gallery.owners["carol"] = "c3"
    assert gallery.listing() == [
        {"name": "alice", "entries": 2, "enrolled_by": "c1", "finite": True},
        {"name": "bob", "entries": 1, "enrolled_by": None, "finite": True},
        {"name": "carol", "entries": 2, "enrolled_by": "c3", "finite": False}]


# --- identify ------------------------------------------------------------------------------------------------
def test_identify_returns_the_nearest_name_by_cosine_rounded_to_six_places(gallery: Gallery) -> None:
    gallery.enrol("x", e([1, 0, 0, 0]))
    gallery.enrol("y", e([0, 1, 0, 0]))
    gallery.enrol("z", e([0, 0, 1, 1]))
    out = gallery.identify(e([0, 0, 5, 5], [0.1, 3, 0, 0], [2, 0, 2, -2]))  # scale does not matter: cosine
    assert [r["name"] for r in out] == ["z", "y", "x"]
    assert out[0]["score"] == 1.0
    assert out[1]["score"] == round(3 / math.hypot(0.1, 3), 6)
    assert out[2]["score"] == 0.57735 and isinstance(out[2]["score"], float)  # 1/sqrt(3) to 6 places


def test_identify_never_matches_a_non_finite_row(gallery: Gallery) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0]))
    gallery.embeddings = torch.cat([gallery.embeddings, torch.full((1, DIM), float("nan"))])
    gallery.names.append("poisoned")
    # the query points away from alice: her score is negative, below the 0 a zeroed NaN row would give
    out = gallery.identify(e([-1, 0.5, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]))
    assert [r["name"] for r in out] == ["alice"] * 3
    assert out[0]["score"] == round(-1 / math.hypot(1, 0.5), 6) and out[2]["score"] == 0.0


def test_identify_with_only_poisoned_rows_names_nobody(gallery: Gallery) -> None:
    gallery.embeddings = torch.full((2, DIM), float("inf"))
    gallery.names = ["a", "b"]
    assert gallery.identify(e([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0])) == [{"name": None, "score": None}] * 3


def test_file_written_by_enrol_loads_with_safetensors_alone(gallery: Gallery, path: Path) -> None:
    gallery.enrol("alice", e([1, 0, 0, 0]))
    assert set(load_file(str(path))) == {"embeddings"}
