"""Sessions, dead pool entries, bounded replay cache, both transports and mixing delays, with in-process nodes.

The forged-packet test reproduces issue 12's finding 1: before sessions, open packets built from the pool file
alone (address + public key) drove a layer (forward, backward, test, state); now none is accepted.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import local, loopback_node
from veil.cascade import pool as pool_mod
from veil.cascade.designer import Designer
from veil.cascade.models import load_spec
from veil.cascade.node import Node
from veil.cascade.packet import Hop, PacketRejected, Peeler, ReplayCache, build_packet, current_window
from veil.cascade.routing import Routing
from veil.cascade.testing import wait_until

LAYER_OPS = (C.OP_INIT, C.OP_FORWARD, C.OP_BACKWARD, C.OP_TEST, C.OP_STATE, C.OP_CLOSE)


def _nodes(k: int, pool: Path, transport: str = "zmq", **kw: object) -> list[Node]:
    ns = [Node(transport=transport, **kw).start() for _ in range(k)]  # type: ignore[arg-type]
    for n in ns:
        pool_mod.register(pool, n.address, n.public_key, transport=transport)
    return ns


@pytest.fixture
def tiny(small_model: Path):
    """conftest's small model on 320 training samples: 10 steps an epoch."""
    ds = D.load(seed=5)
    ds.x_train, ds.y_train = ds.x_train[:320], ds.y_train[:320]
    return load_spec(small_model, ds.input_dim), ds


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[list[Node], Path]]:
    pool = tmp_path / "pool.json"
    ns = _nodes(4, pool)
    try:
        yield ns, pool
    finally:
        for n in ns:
            n.stop()



def test_forged_packets_from_the_pool_file_are_never_accepted(live, tiny) -> None:
    nodes, pool = live
    spec, ds = tiny
    with Designer(pool, spec, dummies=0, seed=5, loop_rate=0) as des:
        des.setup()
        before = des.fetch_state(0)
        victims = [n for n in nodes if n.address in {e.address for e in des.cascade.entries}]
        assert all(n.bound for n in victims)
        acted = {n.address: sum(n.stats[C.OPS[op]] for op in LAYER_OPS) for n in victims}
        # the outsider's view: addresses and public keys from the pool file, nothing else
        outsider = [Hop(e.address, e.public_key) for e in pool_mod.load(pool)]
        sink = Hop(des.hop.address, Peeler().public_key)
        x = ds.x_train[:32]
        bodies = {C.OP_FORWARD: {"x": x}, C.OP_TEST: {"x": x}, C.OP_BACKWARD: {"g": torch.ones(32, 32)}}
        from veil.cascade import message, transport

        sender = transport.make()
        forged = 0
        for hop in outsider:
            for op in LAYER_OPS + (C.OP_LOOP,):
                for flags in (0, C.FLAG_TARGET):
                    for _ in range(5):
                        body = message.encode({}, bodies.get(op, {}))
                        pkt, _ = build_packet([hop, sink], [Routing(op=op, flags=flags, frag=1)] * 2, body,
                                              des.cell)
                        sender.push(hop.address, pkt)
                        forged += 1
        sender.close()
        assert forged >= 4 * 7 * 2 * 5
        assert wait_until(lambda: all(n.stats["rejected"] >= 5 * 2 * 6 + 5 for n in victims))
        for n in victims:  # not one layer op acted on; the refusal names the session
            assert sum(n.stats[C.OPS[op]] for op in LAYER_OPS) == acted[n.address]
            assert any("not authenticated under this node's session" in r for r in n.rejections)
            assert n.layer is not None and n.bound
        after = des.fetch_state(0)  # the layers are untouched and still the designer's
        for layer, st in before.states.items():
            for k, v in st.items():
                assert torch.equal(v, after.states[layer][k])
        res = des.train(ds, epochs=1)
    assert res.losses == local.train_local(spec, ds, 1, seed=5).losses
    assert not any(n.bound for n in victims) and all(n.layer is None for n in victims)  # released at close


def test_a_dead_pool_entry_is_skipped_reported_and_pruned(live, tiny, tmp_path: Path) -> None:
    nodes, pool = live
    spec, ds = tiny
    dead = Node().start()
    pool_mod.register(pool, dead.address, dead.public_key)
    dead.stop()  # killed and left in the pool, as in the finding
    for seed in range(3):  # the finding: 3 of 6 runs failed at set-up; now every run sets up
        with Designer(pool, spec, dummies=0, seed=5, loop_rate=0, select_seed=seed) as des:
            des.setup()
            assert dead.address not in {e.address for e in des.cascade.entries}
            skipped = [e for e in des.events if e["event"] == "skipped"]
            if skipped:
                assert skipped[0]["servers"] == [dead.address]
    from veil.cli.cascade import app

    r = CliRunner().invoke(app, ["pool", "--pool", str(pool), "prune", "--timeout", "2"])
    assert r.exit_code == 0, r.output
    assert "removed " + dead.address in r.output
    assert {e.address for e in pool_mod.load(pool)} == {n.address for n in nodes}


def test_replay_inside_the_window_is_refused_and_memory_stays_flat() -> None:
    now = [1_000_000.0]
    cache = ReplayCache(clock=lambda: now[0])
    sizes = []
    tracemalloc.start()
    for i in range(100_000):
        w = current_window(now[0])
        tag = i.to_bytes(32, "little")
        assert cache.check_window(w) is None and not cache.seen(tag)
        cache.add(w, tag)
        now[0] += 0.01  # 100 packets/s: 6,000 per window
        if i % 10_000 == 9_999:
            sizes.append((len(cache), tracemalloc.get_traced_memory()[0]))
    tracemalloc.stop()
    assert max(s for s, _ in sizes) <= C.REPLAY_WINDOWS_KEPT * 6_000 + 1
    assert sizes[-1][1] < 2 * sizes[3][1]  # flat after the first windows, not growing with the packet count
    # through a peeler with the same clock: a replay in the window is refused, an old window is stale
    p = Peeler(clock=lambda: now[0])
    hops = [Hop("127.0.0.1:1", p.public_key), Hop("127.0.0.1:2", Peeler().public_key)]
    pkt, _ = build_packet(hops, [Routing(op=C.OP_LOOP)] * 2, b"x", window=current_window(now[0]))
    p.peel(pkt)
    now[0] += C.REPLAY_WINDOW_S * 0.9
    with pytest.raises(PacketRejected, match="replayed"):
        p.peel(pkt)
    old, _ = build_packet(hops, [Routing(op=C.OP_LOOP)] * 2, b"x", window=current_window(now[0]) - 5)
    with pytest.raises(PacketRejected, match="stale"):
        p.peel(old)


def test_session_packets_need_the_secret_and_the_cache_is_run_scoped() -> None:
    p = Peeler()
    secret = os.urandom(32)
    p.bind(secret)
    mine = [Hop("127.0.0.1:1", p.public_key, secret), Hop("127.0.0.1:2", Peeler().public_key)]
    pkt, _ = build_packet(mine, [Routing(op=C.OP_FORWARD)] * 2, b"x")
    assert p.peel(pkt).session
    assert p.cache_size == 1
    guess = [Hop("127.0.0.1:1", p.public_key, os.urandom(32)), mine[1]]
    forged, _ = build_packet(guess, [Routing(op=C.OP_FORWARD)] * 2, b"x")
    with pytest.raises(PacketRejected, match="header authentication failed"):
        p.peel(forged)
    open_pkt, _ = build_packet([Hop("127.0.0.1:1", p.public_key), mine[1]], [Routing(op=C.OP_FORWARD)] * 2, b"x")
    assert not p.peel(open_pkt).session  # decrypts, but is not authenticated: the node refuses its op
    p.unbind()
    assert p.cache_size == 1  # the open packet's tag only; the session's went with it


@pytest.mark.parametrize("transport", ["grpc", "zmq"])
def test_both_transports_and_mixing_delays_train_like_local(tmp_path: Path, tiny, transport: str) -> None:
    spec, ds = tiny
    pool = tmp_path / "pool.json"
    ns = _nodes(4, pool, transport, mix_delay=0.001 if transport == "zmq" else 0.0)
    try:
        with Designer(pool, spec, dummies=0, seed=5, loop_rate=1, microbatches=2, transport=transport) as des:
            res = des.train(ds, epochs=1)
    finally:
        for n in ns:
            n.stop()
    ref = local.train_local(spec, ds, 1, seed=5)
    assert max(abs(a - b) for a, b in zip(res.losses, ref.losses, strict=True)) <= 1e-5


def test_loopback_helper_sends_raw_bytes() -> None:
    with loopback_node() as ln:
        ln.send(os.urandom(C.packet_size(C.CELL_SIZES[0])))
        ln.send(b"short")
        assert ln.wait_handled(2)
        assert ln.stats["rejected"] == 2 and any("wrong packet length" in r for r in ln.rejections)


def test_a_missed_time_bound_on_a_slow_machine_is_not_taken_for_a_crash(tmp_path: Path, tiny) -> None:
    """Flaky under load before: a step that overran T was a 'crash' and replaced a healthy cascade (with no spare
    servers, the run failed). Now a missed bound triggers a liveness check; live servers mean 'slow', not crashed.
    Simulated here with a bound far below the cascade's real latency (nodes hold each packet ~20 ms)."""
    spec, ds = tiny
    ds.x_train, ds.y_train = ds.x_train[:96], ds.y_train[:96]
    pool = tmp_path / "pool.json"
    ns = _nodes(4, pool, mix_delay=0.02)
    try:
        with Designer(pool, spec, dummies=0, seed=5, loop_rate=0, timeout_floor=0.001, timeout_margin=0.001) as des:
            res = des.train(ds, epochs=1)
    finally:
        for n in ns:
            n.stop()
    kinds = [e["event"] for e in res.events]
    assert "crash" not in kinds and "replaced" not in kinds
    assert kinds.count("slow") >= 3  # every step's wait overran the 1 ms bound
    assert res.losses == local.train_local(spec, ds, 1, seed=5).losses
