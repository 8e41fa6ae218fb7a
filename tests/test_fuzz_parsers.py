"""Property-based fuzzing (hypothesis) of every parser that takes untrusted bytes (issue 12).

The property is the same for each: whatever the bytes, the parser either returns a well-formed
value or raises Veil's one user-facing error type (``VeilError``, or the service's ``BadRequest``)
with a one-line message, never another exception, and never accepts what it must not. Bounded
(a few dozen examples per parser, no deadline) so the default suite stays fast; ``bench/fuzz.py``
runs the long campaigns against live processes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from veil.cascade import constants as C
from veil.cascade.keys import derive, generate_private_key, public_bytes
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_packet, current_window
from veil.cascade.routing import Routing
from veil.data.splits import Split
from veil.errors import VeilError
from veil.keys import OwnerKey
from veil.serve.auth import Credentials, read_token
from veil.serve.legacy import read_legacy
from veil.serve.protocol import BadRequest, decode, encode
from veil.store import StoreWriter, open_store

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
TOKENS, DIM = 3, 4


def one_line(exc: BaseException) -> None:
    assert str(exc) and "\n" not in str(exc).strip(), repr(exc)


def mutate(data: bytes, draw) -> bytes:
    """One of: flip bytes, truncate, extend, splice junk, or overwrite the (JSON) header region."""
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "header"]))
    b = bytearray(data)
    if kind == "flip" and b:
        for i in draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        b = b[: draw(st.integers(0, max(0, len(b) - 1)))]
    elif kind == "extend":
        b += draw(st.binary(min_size=1, max_size=64))
    elif kind == "splice" and b:
        i = draw(st.integers(0, len(b)))
        b[i:i] = draw(st.binary(min_size=1, max_size=32))
    elif kind == "header" and len(b) > 8:
        n = struct.unpack_from("<Q", b)[0]
        end = min(8 + n, len(b))
        junk = draw(st.binary(min_size=0, max_size=max(0, end - 8)))
        b[8:8 + len(junk)] = junk
    return bytes(b)


def valid_body(seed: int, batch: int = 2, flipped: bool = False) -> bytes:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(batch, TOKENS, DIM, generator=g)
    return encode(f, torch.randn(batch, TOKENS, DIM, generator=g) if flipped else None)


# --- the service's body decoder ---------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=512))
def test_body_decoder_random_bytes(body: bytes) -> None:
    try:
        f, g = decode(body, TOKENS, DIM, 8)
    except BadRequest as exc:
        assert exc.status in (400, 422)
        one_line(exc)
    else:
        assert f.dtype == torch.float32 and torch.isfinite(f).all()


@FUZZ
@given(st.data())
def test_body_decoder_mutated_valid_bodies(data) -> None:
    body = mutate(valid_body(data.draw(st.integers(0, 99)), data.draw(st.integers(1, 3)), data.draw(st.booleans())),
                  data.draw)
    try:
        f, g = decode(body, TOKENS, DIM, 8)
    except BadRequest as exc:
        assert exc.status in (400, 422)
        one_line(exc)
    else:  # whatever got through is what the server is allowed to embed
        assert f.shape[1:] == (TOKENS, DIM) and 1 <= len(f) <= 8 and float(f.abs().max()) <= 1e4
        assert g is None or g.shape == f.shape


@FUZZ
@given(st.dictionaries(st.sampled_from(["features", "flipped", "x"]),
                       st.tuples(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.uint8]),
                                 st.lists(st.integers(0, 5), max_size=4),
                                 st.sampled_from([0.0, 1.0, 3e38, float("nan"), float("inf"), -1e5])),
                       max_size=3))
def test_body_decoder_well_formed_safetensors_of_any_shape_and_value(spec) -> None:
    tensors = {k: torch.full(shape, v).to(dt) for k, (dt, shape, v) in spec.items()}
    try:
        f, _ = decode(st_save(tensors), TOKENS, DIM, 8)
    except BadRequest as exc:
        one_line(exc)
    else:
        assert torch.isfinite(f).all() and float(f.abs().max()) <= 1e4


# --- the cascade packet peeler (public API of veil.cascade.packet) --------------------------------------------
CELL = C.CELL_SIZES[0]
PEELER_KEY = generate_private_key()


def fresh_peeler() -> Peeler:
    return Peeler(PEELER_KEY)


def genuine_packet(seed: int) -> bytes:
    peeler = fresh_peeler()
    route = [Routing(op=C.OP_LOOP, frag=1)] * 2
    pkt, _ = build_packet([Hop("127.0.0.1:1", peeler.public_key), Hop("127.0.0.1:2", public_bytes(
        generate_private_key()))], route, os.urandom(seed % 64), CELL)
    return pkt


@FUZZ
@given(st.data())
def test_peeler_rejects_every_mutated_packet(data) -> None:
    pkt = genuine_packet(data.draw(st.integers(0, 1000)))
    bad = mutate(pkt, data.draw)
    if bad == pkt:
        return
    with pytest.raises(PacketRejected) as info:
        fresh_peeler().peel(bad)
    one_line(info.value)


@FUZZ
@given(st.sampled_from(sorted(C.PACKET_SIZES)[:2]), st.binary(min_size=64, max_size=64))
def test_peeler_rejects_random_packets_of_valid_length(size: int, seed: bytes) -> None:
    rnd = (seed * (size // len(seed) + 1))[:size]
    with pytest.raises(PacketRejected):
        fresh_peeler().peel(rnd)


WELL_FORMED_ROUTING = st.builds(
    lambda op, flags, tag, addr, key, window, frag, n, extra: struct.pack(
        C.ROUTING_FORMAT, op, (C.FORMAT_VERSION << C.VERSION_SHIFT) | flags, tag, addr, key, CELL, window, frag, n,
        extra),
    st.sampled_from(sorted(C.OPS)), st.integers(0, C.FLAGS_MASK),
    st.binary(min_size=C.STEP_TAG_SIZE, max_size=C.STEP_TAG_SIZE),
    st.binary(max_size=C.ADDRESS_SIZE), st.binary(min_size=C.KEY_SIZE, max_size=C.KEY_SIZE),
    st.sampled_from([0, 2**32 - 1]).map(lambda w: w or current_window()), st.integers(0, 2**16 - 1),
    st.integers(0, 2**16 - 1), st.binary(max_size=C.EXTRA_SIZE))


@FUZZ
@given(st.one_of(st.binary(min_size=C.ROUTING_SIZE, max_size=C.ROUTING_SIZE), WELL_FORMED_ROUTING))
def test_peeler_forged_header_with_arbitrary_routing_bytes(raw: bytes) -> None:
    """Forged but well-formed: someone holding the node's public key seals *any* routing bytes to it."""
    peeler = fresh_peeler()
    eph = generate_private_key()
    keys = derive(eph.exchange(PEELER_KEY.public_key()))
    beta = os.urandom(C.HEADER_SIZE - C.SLOT_SIZE)
    header = public_bytes(eph) + ChaCha20Poly1305(keys.header).encrypt(bytes(12), raw, beta) + beta
    payload = AESGCM(keys.payload).encrypt(bytes(12), bytes(CELL - C.TAG_SIZE), header)
    try:
        peeled = peeler.peel(header + payload)
    except VeilError as exc:  # PacketRejected, or the routing decoder's VeilError
        one_line(exc)
    else:  # an open (unauthenticated) packet: it must never be taken for the session's
        assert not peeled.session


# --- the store: manifest and shards -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzzstore") / "store"
    w = StoreWriter(out, {"num_classes": 3}, shard_size=4)
    w.add(torch.randn(6, TOKENS, DIM), torch.tensor([0, 1, 2, 0, 1, 2]))
    w.close()
    return out


def read_whole_store(folder: Path) -> None:
    store = open_store(folder)
    for feats, labels in store.shards():
        assert feats.shape[1:] == store.token_shape and len(labels) == len(feats)


@FUZZ
@given(st.data())
def test_store_reader_mutated_manifest(good_store, tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("s")
    for p in good_store.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    manifest = json.loads((good_store / "manifest.json").read_text())
    choice = data.draw(st.sampled_from(["bytes", "json"]))
    if choice == "bytes":
        (folder / "manifest.json").write_bytes(mutate((good_store / "manifest.json").read_bytes(), data.draw))
    else:
        key = data.draw(st.sampled_from(sorted(manifest)))
        manifest[key] = data.draw(st.one_of(st.none(), st.integers(-5, 10**12), st.text(max_size=20),
                                            st.lists(st.integers(), max_size=3), st.just([{"file": "../x"}])))
        (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        read_whole_store(folder)
    except VeilError as exc:
        one_line(exc)


@FUZZ
@given(st.data())
def test_store_reader_mutated_shard(good_store, tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("s")
    for p in good_store.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    shard = sorted(folder.glob("shard-*.safetensors"))[data.draw(st.integers(0, 1))]
    original = shard.read_bytes()
    shard.write_bytes(mutate(original, data.draw))
    if shard.read_bytes() == original:
        return
    with pytest.raises(VeilError) as info:  # the manifest's SHA-256 catches every change
        read_whole_store(folder)
    one_line(info.value)


# --- the key reader, the credentials and token files -------------------------------------------------------
def private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@FUZZ
@given(st.data())
def test_key_reader(tmp_path_factory, data) -> None:
    folder = tmp_path_factory.mktemp("k")
    good = OwnerKey(bytes(range(32))).save(folder / "good.key").read_bytes()
    body = data.draw(st.one_of(st.binary(max_size=200), st.builds(lambda: good).map(lambda b: b),
                               st.just(good).flatmap(lambda b: st.just(mutate(b, data.draw)))))
    path = private(folder / "k.key", body)
    try:
        key = OwnerKey.load(path)
    except VeilError as exc:
        one_line(exc)
    else:
        assert key.seed == bytes(range(32)) or json.loads(body).get("fingerprint") is None


@FUZZ
@given(st.binary(max_size=300))
def test_credentials_and_token_readers(tmp_path_factory, body: bytes) -> None:
    folder = tmp_path_factory.mktemp("c")
    for reader in (Credentials.load, read_token):
        try:
            reader(private(folder / "f", body))
        except VeilError as exc:
            one_line(exc)


# --- the split file and the gallery file -------------------------------------------------------------------
SPLIT = {"format": "veil-split", "groups": {"owner_train": ["a"], "owner_test": ["b"]},
         "spec": {"seed": 0}, "dataset": "x", "dataset_digest": "d", "gallery_seed": 0}


@FUZZ
@given(st.data())
def test_split_reader(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("sp") / "split.json"
    body = json.dumps(SPLIT).encode()
    path.write_bytes(data.draw(st.one_of(st.binary(max_size=200), st.just(body).map(lambda b: mutate(b, data.draw)))))
    try:
        Split.load(path)
    except VeilError as exc:
        one_line(exc)


@FUZZ
@given(st.data())
def test_legacy_gallery_reader(tmp_path_factory, data) -> None:
    """The old safetensors gallery still crosses a trust boundary: ``veil serve-gallery migrate`` reads it."""
    folder = tmp_path_factory.mktemp("g")
    good = st_save({"embeddings": torch.eye(4)[:2]}, metadata={"format": "veil-gallery", "recnet": "digest",
                                                               "names": '["alice", "alice"]', "owners": "{}"})
    meta = {"format": "veil-gallery", "recnet": "digest", "names": data.draw(st.sampled_from(
        ['["a"]', '[1]', '{}', 'null', '["a","b"]', "[" * 50])), "owners": data.draw(st.sampled_from(
            ['{}', '[]', '"x"', '{"a": 3}']))}
    body = data.draw(st.one_of(st.binary(max_size=300), st.just(good).map(lambda b: mutate(b, data.draw)),
                               st.just(st_save({"embeddings": torch.ones(1, 4)}, metadata=meta))))
    path = folder / "g.safetensors"
    path.write_bytes(body)
    try:
        old = read_legacy(path)
    except VeilError as exc:
        one_line(exc)
    else:
        assert len(old.names) == len(old.embeddings) and set(old.owners) == set(old.names)
