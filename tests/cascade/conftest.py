"""Shared fixtures: real node processes on 127.0.0.1, killed at teardown whatever happens."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from veil.cascade import pool as pool_mod

# A fresh Python + torch process doing set-up-sized work (start, register, or a 1-epoch CLI run): 60-80 s was
# seen at load average 13-17 on 2 shared cores, so 300 s leaves ~4x; a wedged process still fails the test.
PROCESS_TIMEOUT_S = 300.0

SMALL_MODEL = """\
[model]
name = "small"
[[layers]]
kind = "linear"
in = "auto"
out = 32
activation = "relu"
[[layers]]
kind = "linear"
in = 32
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


@dataclass
class NodeProc:
    proc: subprocess.Popen
    entry: pool_mod.Entry
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class Cluster:
    """Node processes registered in one pool file; tests carve sub-pools out of it."""

    process_timeout = PROCESS_TIMEOUT_S

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = root / "pool.json"
        self.nodes: list[NodeProc] = []

    def spawn(self, k: int, misbehave: str | None = None, timeout: float = PROCESS_TIMEOUT_S) -> list[NodeProc]:
        procs = []
        for _ in range(k):
            log = self.root / f"node{len(self.nodes) + len(procs)}.log"
            cmd = [sys.executable, "-m", "veil.cli.cascade", "node", "--listen", "127.0.0.1:0",
                   "--pool", str(self.pool), "--log-file", str(log)]
            if misbehave:
                cmd += ["--misbehave", misbehave]
            procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), log))
        deadline = time.monotonic() + timeout
        started: list[NodeProc] = []
        while time.monotonic() < deadline:
            by_pid = {e.pid: e for e in pool_mod.load(self.pool)}
            if all(p.pid in by_pid for p, _ in procs):
                started = [NodeProc(p, by_pid[p.pid], log) for p, log in procs]
                break
            if any(p.poll() is not None for p, _ in procs):
                break
            time.sleep(0.1)
        if not started:
            for p, _ in procs:
                p.kill()
            raise RuntimeError("node processes did not register in time")
        self.nodes.extend(started)
        return started

    def alive(self, exclude: set[str] = frozenset()) -> list[NodeProc]:
        return [n for n in self.nodes if n.alive and n.entry.address not in exclude]

    def sub_pool(self, name: str, nodes: list[NodeProc]) -> Path:
        path = self.root / f"{name}.json"
        pool_mod.save(path, [n.entry for n in nodes])
        return path

    def shutdown(self) -> None:
        for n in self.nodes:
            if n.alive:
                n.proc.terminate()
        for n in self.nodes:
            try:
                n.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    c = Cluster(tmp_path_factory.mktemp("cascade"))
    try:
        c.spawn(11)
        c.spawn(1, misbehave="corrupt")
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    p = tmp_path / "small.toml"
    p.write_text(SMALL_MODEL)
    return p
