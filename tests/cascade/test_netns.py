"""A tiny cascade trained across separate emulated hosts: the designer and each node in its own network namespace,
joined by veth pairs through a bridge, links at 100 Mbit/s (tc tbf) with a held 2 ms one-way delay
(transport_delay; the kernel has no netem). Needs root and iproute2, as CI has; skipped with the reason otherwise.
SYNTHETIC-free: scikit-learn's digits, a subset."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veil.cascade import data as D
from veil.cascade import local
from veil.cascade import pool as pool_mod
from veil.cascade.models import load_spec
from veil.cascade.netns import EmulatedNetwork, LinkProfile, unavailable

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"network namespaces unavailable: {WHY}")

TINY = """\
[model]
name = "tiny"
[[layers]]
kind = "linear"
in = "auto"
out = 10
[[layers]]
kind = "log_softmax"
[[layers]]
kind = "nll"
[optimizer]
kind = "sgd"
lr = 0.1
momentum = 0.9
[train]
batch = 32
"""

DESIGNER = """
import json, sys
from veil.cascade import data as D
from veil.cascade import transport
from veil.cascade.designer import Designer
from veil.cascade.models import load_spec
pool, model, listen, out = sys.argv[1:5]
ds = D.load(seed=1)
ds.x_train, ds.y_train = ds.x_train[:128], ds.y_train[:128]
tr = transport.make("zmq", link_delay=0.002)
with Designer(pool, load_spec(model, ds.input_dim), dummies=0, seed=1, keep_loss=True, loop_rate=1, listen=listen,
              transport=tr) as des:
    res = des.train(ds, epochs=1)
    json.dump({"losses": res.losses, "addresses": [e.address for e in des.cascade.entries],
               "loop_rtt": des.bound.loop_rtt, "timeout": des.timeout(), "hold": tr.stats.as_dict()}, open(out, "w"))
"""

PROFILE = LinkProfile("test link (2 ms, 100 Mbit/s)", 2e-3, 100e6)


def test_a_tiny_cascade_trains_across_namespaces_like_local_training(tmp_path: Path) -> None:
    model = tmp_path / "tiny.toml"
    model.write_text(TINY)
    pool, out = tmp_path / "pool.json", tmp_path / "out.json"
    with EmulatedNetwork(3, PROFILE, net=78) as net:
        nodes = [net.popen(i, [sys.executable, "-m", "veil.cli.cascade", "node", "--listen", f"{net.ip(i)}:0",
                               "--pool", str(pool), "--log-file", str(tmp_path / f"node{i}.log"),
                               "--link-delay-ms", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in (1, 2)]
        try:
            deadline = time.monotonic() + 300
            while len(pool_mod.load(pool)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(pool_mod.load(pool)) == 2, "nodes did not register"
            designer = net.popen(0, [sys.executable, "-c", DESIGNER, str(pool), str(model), f"{net.ip(0)}:0",
                                     str(out)], stderr=subprocess.PIPE, text=True)
            _, err = designer.communicate(timeout=300)
            assert designer.returncode == 0, err[-2000:]
        finally:
            for p in nodes:
                p.terminate()
            for p in nodes:
                p.wait(timeout=60)
        names = {net.namespace(i) for i in range(3)}
    got = json.loads(out.read_text())
    ds = D.load(seed=1)
    ds.x_train, ds.y_train = ds.x_train[:128], ds.y_train[:128]
    assert got["losses"] == local.train_local(load_spec(model, ds.input_dim), ds, 1, seed=1).losses  # bit for bit
    assert sorted(a.rpartition(":")[0] for a in got["addresses"]) == ["10.78.0.11", "10.78.0.12"]  # off loopback
    # a loop crosses 3 held links: its measured round trip includes their delay, and the crash bound follows it
    assert got["loop_rtt"] >= 3 * PROFILE.delay_s
    assert got["timeout"] >= 2.0
    assert got["hold"]["packets"] > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in left for n in names)  # the bench's namespaces are gone
