"""Issue 24, findings 5 and 6, with in-process nodes: a dead designer, pool prune, clocks.

Before the fix: after a designer was killed, its nodes stayed bound until a packet happened to arrive,
a new run failed with "only k of n answered" and the prune it advised removed the live, bound nodes;
a node 150 s off looked dead and one 90 s off was taken for crashed mid-run. Now a session-free ping
(answered by bound nodes too, with the node's clock) tells bound, skewed and dead apart; sessions lapse
on their own after their idle timeout; the replay windows tolerate ``CLOCK_SKEW_S``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import pool as pool_mod
from veil.cascade import transport as transport_mod
from veil.cascade.designer import Designer
from veil.cascade.inbox import Inbox
from veil.cascade.liveness import ping
from veil.cascade.models import load_spec
from veil.cascade.node import Node
from veil.cascade.testing import wait_until
from veil.cli.cascade import app
from veil.errors import VeilError


def start(pool: Path, k: int, **kw: object) -> list[Node]:
    nodes = [Node(**kw).start() for _ in range(k)]  # type: ignore[arg-type]
    for n in nodes:
        pool_mod.register(pool, n.address, n.public_key)
    return nodes


@pytest.fixture
def spec(small_model: Path):
    return load_spec(small_model, D.load(seed=5).input_dim)


def abandon(pool: Path, spec) -> list[str]:  # noqa: ANN001
    """A designer that deploys, then vanishes without closing its sessions (as under SIGKILL)."""
    des = Designer(pool, spec, dummies=0, loop_rate=0, release_on_close=False)
    try:
        des.setup()
        assert des.cascade is not None
        return [e.address for e in des.cascade.entries]
    finally:
        des.close()


def test_prune_after_a_killed_designer_keeps_bound_nodes_and_removes_dead_ones(tmp_path, spec):
    pool = tmp_path / "pool.json"
    nodes = start(pool, 4)
    dead = Node().start()
    pool_mod.register(pool, dead.address, dead.public_key)
    dead.stop()
    try:
        bound = abandon(pool, spec)
        assert len(bound) == 4 and all(n.bound for n in nodes)
        r = CliRunner().invoke(app, ["pool", "--pool", str(pool), "prune", "--timeout", "3"])
        assert r.exit_code == 0, r.output
        assert f"removed {dead.address}" in r.output
        assert all(f"kept {a}: bound to another run" in " ".join(r.output.split()) for a in bound)
        assert {e.address for e in pool_mod.load(pool)} == {n.address for n in nodes}  # 0 live nodes removed
    finally:
        for n in nodes:
            n.stop()


def test_failed_set_up_says_which_nodes_are_bound_and_which_are_dead(tmp_path, spec):
    pool = tmp_path / "pool.json"
    nodes = start(pool, 4)
    dead = Node().start()
    pool_mod.register(pool, dead.address, dead.public_key)
    dead.stop()
    try:
        abandon(_sub(pool, tmp_path, nodes), spec)
        with Designer(pool, spec, dummies=0, loop_rate=0) as des, pytest.raises(VeilError) as err:
            des.setup()
        msg = str(err.value)
        assert "bound to another run: " in msg and f"dead: {dead.address}" in msg
        assert all(n.address in msg.split("bound to another run: ")[1] for n in nodes)
        assert "idle timeout" in msg
    finally:
        for n in nodes:
            n.stop()


def _sub(pool: Path, tmp_path: Path, nodes: list[Node]) -> Path:
    sub = tmp_path / "first.json"
    pool_mod.save(sub, [e for e in pool_mod.load(pool) if e.address in {n.address for n in nodes}])
    return sub


def test_nodes_of_a_vanished_designer_free_themselves_after_the_idle_timeout(tmp_path, spec):
    pool = tmp_path / "pool.json"
    nodes = start(pool, 4, session_idle=1.0)
    try:
        abandon(pool, spec)
        assert all(n.bound for n in nodes)
        # no packet reaches them any more: the node's own sweep ends the session
        assert wait_until(lambda: not any(n.bound for n in nodes), timeout=10.0)
        with Designer(pool, spec, dummies=0, loop_rate=0) as des:  # and a new run gets them
            des.setup()
    finally:
        for n in nodes:
            n.stop()


def test_a_skewed_clock_is_reported_as_skew_not_as_a_dead_node(tmp_path, spec):
    pool = tmp_path / "pool.json"
    fine = start(pool, 3)
    near = start(pool, 1, clock=lambda: time.time() + 90.0)  # within the tolerance: usable
    far = start(pool, 1, clock=lambda: time.time() + 150.0)
    try:
        tr = transport_mod.make("zmq")
        inbox = Inbox(tr, C.CELL_SIZES[0])
        try:
            answers = ping(inbox, [e for e in pool_mod.load(pool)], 5.0)
        finally:
            inbox.close()
            tr.close()
        assert answers[far[0].address].alive and answers[far[0].address].skewed
        assert abs(answers[far[0].address].skew_s - 150.0) < 5.0
        assert answers[near[0].address].usable and abs(answers[near[0].address].skew_s - 90.0) < 5.0
        with Designer(pool, spec, dummies=1, loop_rate=0) as des, pytest.raises(VeilError) as err:
            des.setup()  # needs all 5: the far one is refused, by name and skew
        assert f"clock skew: {far[0].address} (+150 s)" in str(err.value) and "dead:" not in str(err.value)
        pool_mod.save(pool, [e for e in pool_mod.load(pool) if e.address != far[0].address])
        with Designer(pool, spec, dummies=0, loop_rate=0) as des:
            des.setup()  # the +90 s node takes part: init packets from 90 s in its past are accepted
            clock = next(e for e in des.events if e["event"] == "clock")["skew_s"]
        assert near[0].address in clock and abs(clock[near[0].address] - 90.0) < 5.0
    finally:
        for n in fine + near + far:
            n.stop()
