"""End to end with real node processes on 127.0.0.1 over ZeroMQ (the default transport): the four phases,
dummies, loop messages, micro-batches, equality with local training, crash recovery and Byzantine detection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import local
from veil.cascade import pool as pool_mod
from veil.cascade.designer import Designer
from veil.cascade.models import load_spec


def test_four_phases_match_local_training(cluster) -> None:
    ds = D.load(seed=0)
    spec = load_spec("mlp", ds.input_dim)
    spec.optimizer["lr"] = 0.1
    nodes = cluster.alive()[:6]
    pool = cluster.sub_pool("phases", nodes)
    with Designer(pool, spec, dummies=1, seed=0, select_seed=3, loop_rate=2) as des:
        sent, received = [], []  # every packet the designer puts on the wire or gets back, every op
        des.inbox.on_send_hook = lambda pkt: sent.append(len(pkt))
        des.inbox.on_packet_hook = lambda pkt: received.append(len(pkt))
        res = des.train(ds, epochs=2)
        layer_of = des.cascade.layer_of
        assert layer_of.count(None) == 1 and [i for i in layer_of if i is not None] == [0, 1, 2, 3, 4]
        assert des.loops_sent == 2 * 2 * D.steps_per_epoch(len(ds.x_train), spec.batch)
        deadline = time.monotonic() + 10
        while des.loops_returned < des.loops_sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert des.loops_returned == des.loops_sent
        # one packet length for the whole run (init, loop, forward, backward, state, test), chosen from the model
        assert des.cell == 64 * 1024 and set(sent) == set(received) == {C.packet_size(des.cell)}
        assert len(sent) > 4 * D.steps_per_epoch(len(ds.x_train), spec.batch)
        # every step after the first sent forwards whose headers were built while the previous step's travelled
        assert des.trainer.prepared_used == len(res.losses) - 1
        # the test phase (op 3) through the cascade gives the same outputs as the local model
        ref = local.train_local(spec, ds, 2, seed=0)
        out = des.predict(ds.x_test[:50])
        assert torch.equal(out, local._forward(ref.layers, ds.x_test[:50], None).detach())
    assert res.losses == ref.losses  # bit-for-bit the same SGD trajectory
    assert res.accuracy == ref.accuracy
    assert res.accuracy > 0.5
    dummy = next(n for n in nodes if n.entry.address == des.cascade.entries[layer_of.index(None)].address)
    assert "layer initialised: kind=identity" in dummy.log_text()


def test_designer_can_keep_the_loss(cluster, small_model: Path) -> None:
    ds = D.load(seed=1)
    spec = load_spec(small_model, ds.input_dim)
    pool = cluster.sub_pool("keep", cluster.alive()[:4])
    with Designer(pool, spec, dummies=1, seed=1, keep_loss=True, loop_rate=0) as des:
        res = des.train(ds, epochs=1)
        assert len(des.cascade.entries) == 4  # 3 remote layers + 1 dummy; the NLL stays with the designer
    assert res.losses == local.train_local(spec, ds, 1, seed=1).losses


def test_cli_node_pool_train_and_test(cluster, small_model: Path, tmp_path: Path) -> None:
    pool = cluster.sub_pool("cli", cluster.alive()[:5])
    out = tmp_path / "run"
    env = dict(os.environ, COLUMNS="120")
    cmd = [sys.executable, "-m", "veil.cli.cascade"]
    limit = cluster.process_timeout  # a fresh Python + torch process on a loaded machine
    r = subprocess.run(cmd + ["train", "--pool", str(pool), "--model", str(small_model), "--epochs", "1",
                              "--out", str(out)], capture_output=True, text=True, timeout=limit, env=env)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stderr
    assert (out / "model.safetensors").is_file() and oct((out / "cascade.json").stat().st_mode)[-3:] == "600"
    r = subprocess.run(cmd + ["test", "--run", str(out)], capture_output=True, text=True, timeout=limit, env=env)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stderr
    r = subprocess.run(cmd + ["test", "--run", str(tmp_path / "missing")], capture_output=True, text=True,
                       timeout=limit, env=env)
    assert r.returncode == 2 and "error:" in r.stderr and "not found" in r.stderr


def test_crash_mid_epoch_resumes_from_checkpoint_on_a_new_cascade(cluster, small_model: Path) -> None:
    ds = D.load(seed=2)
    spec = load_spec(small_model, ds.input_dim)
    alive = cluster.alive()
    first, spares = alive[:5], alive[5:10]
    pool = cluster.sub_pool("crash", first)
    with Designer(pool, spec, dummies=1, seed=2, checkpoint_every=10, timeout_floor=3.0, loop_rate=0,
                  select_seed=5) as des:
        des.setup()
        pool_mod.save(pool, [n.entry for n in first + spares])  # fresh servers join the pool later
        victim = next(n for n in first if n.entry.address == des.cascade.entries[2].address)
        killed: list[int] = []

        def kill_mid_epoch(step: int, total: int, loss: float) -> None:
            if step == 15 and not killed:
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait(timeout=10)
                killed.append(step)

        res = des.train(ds, epochs=2, on_step=kill_mid_epoch)
        new = {e.address for e in des.cascade.entries}
    assert killed == [15] and not victim.alive
    kinds = [e["event"] for e in res.events]
    assert "crash" in kinds and "replaced" in kinds
    replaced = next(e for e in res.events if e["event"] == "replaced")
    assert replaced["resume_step"] == 10  # nothing lost beyond the last checkpoint
    assert not new & {n.entry.address for n in first}  # an entirely fresh cascade
    ref = local.train_local(spec, ds, 2, seed=2)
    assert res.losses == ref.losses and res.accuracy == ref.accuracy


def test_byzantine_node_is_detected_at_test_phase_and_replaced(cluster, small_model: Path) -> None:
    ds = D.load(seed=3)
    spec = load_spec(small_model, ds.input_dim)
    bad = next(n for n in cluster.nodes if "--misbehave" in n.proc.args)
    honest = [n for n in cluster.alive() if n is not bad]
    first, spares = [bad] + honest[:4], honest[4:9]
    pool = cluster.sub_pool("byz", first)
    with Designer(pool, spec, dummies=1, seed=3, min_accuracy=0.3, loop_rate=0, timeout_floor=2.0) as des:
        des.setup()
        assert bad.entry.address in {e.address for e in des.cascade.entries}
        pool_mod.save(pool, [n.entry for n in first + spares])
        res = des.train(ds, epochs=2)
        final = {e.address for e in des.cascade.entries}
    byz = [e for e in res.events if e["event"] == "byzantine"]
    assert len(byz) == 1 and byz[0]["accuracy"] < 0.3 and byz[0]["step"] == D.steps_per_epoch(len(ds.x_train), 32)
    assert bad.entry.address not in final
    assert res.accuracy >= 0.3 and len(res.epoch_accuracy) == 2
    assert res.losses == local.train_local(spec, ds, 2, seed=3).losses  # restarted from verified weights


def test_microbatches_in_flight_match_local_training(cluster, small_model: Path) -> None:
    """GPipe-style: m micro-batches in flight, gradients accumulated, one step per batch: local's arithmetic up to
    summation order (per-step losses within 1e-5, same accuracy)."""
    ds = D.load(seed=4)
    spec = load_spec(small_model, ds.input_dim)
    pool = cluster.sub_pool("micro", cluster.alive()[:5])
    with Designer(pool, spec, dummies=1, seed=4, loop_rate=1, microbatches=4) as des:
        res = des.train(ds, epochs=2)
        assert des.cell == 8 * 1024  # micro-batches of 8 rows fit the smallest class
        assert des.trainer.prepared_used == len(res.losses) - 1
    ref = local.train_local(spec, ds, 2, seed=4)
    assert len(res.losses) == len(ref.losses)
    assert max(abs(a - b) for a, b in zip(res.losses, ref.losses, strict=True)) <= 1e-5
    assert abs(res.accuracy - ref.accuracy) <= 0.001
