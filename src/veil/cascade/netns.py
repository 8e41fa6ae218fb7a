"""Separate hosts on one machine: each party in its own Linux network namespace, joined through veth pairs to one
bridge (a switch), each host's link rate-limited in both directions with ``tc tbf``.

Why: on loopback every transfer is a memory copy with a 64 KiB MTU; between hosts, packets cross a network stack
with a 1,500-byte MTU (TCP segments a 267 KB packet into ~180 frames), at a link's rate and with its delay, and
parties reach each other by real addresses. Namespaces give each party its own stack, interface and address;
``tbf`` gives the rate. This kernel has no ``netem``, so the link's *delay* comes from ``transport_delay`` (every
host holds each packet it receives for the one-way delay), not from here.

Needs root and iproute2 (``ip``, ``tc``); ``unavailable()`` says why not, so tests can skip with a reason.
Everything created is named with one prefix and removed on exit (also after an error).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from veil.errors import VeilError


@dataclass(frozen=True)
class LinkProfile:
    """One link class: one-way delay (s) and rate (bit/s). Every host's link is one of these."""

    name: str
    delay_s: float
    rate_bps: float

    @property
    def tc_rate(self) -> str:
        return f"{int(self.rate_bps)}bit"

    @property
    def burst_bytes(self) -> int:
        """tbf bucket: 1 ms at the rate, at least a few MTU-sized frames (so small rates stay accurate)."""
        return max(int(self.rate_bps / 8 / 1000), 16 * 1514)


PROFILES = {
    "dc": LinkProfile("one data centre (0.25 ms, 1 Gbit/s)", 0.25e-3, 1e9),
    "regions": LinkProfile("regions apart (10 ms, 100 Mbit/s)", 10e-3, 100e6),
}


def _run(argv: Sequence[str]) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if r.returncode != 0:
        raise VeilError(f"{' '.join(argv)} failed: {r.stderr.strip() or r.stdout.strip()}")


def unavailable() -> str | None:
    """None when namespaces, veth pairs and tbf can be used here, else the reason."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    probe = f"vlp{os.getpid() % 100000}"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "del", probe])
    except VeilError as exc:
        return f"cannot create a network namespace ({exc})"
    return None


class EmulatedNetwork:
    """``hosts`` namespaces on one bridge, host *i* at ``10.<net>.0.<10+i>``, links at ``profile``'s rate.

    Use as a context manager; ``popen(i, argv)`` starts a process inside host *i* (optionally pinned to a CPU).
    """

    def __init__(self, hosts: int, profile: LinkProfile, net: int = 77, mtu: int = 1500) -> None:
        if not 1 <= hosts <= 200 or not 0 < net < 255:
            raise VeilError("1 to 200 hosts, and a /16 net byte in 1..254")
        self.hosts, self.profile, self.net, self.mtu = hosts, profile, net, mtu
        self.prefix = f"vl{os.getpid() % 100000}"
        self.bridge = f"{self.prefix}br"
        self._made: list[tuple[str, str]] = []  # ("ns"|"link", name), removed in reverse order

    def namespace(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def ip(self, i: int) -> str:
        return f"10.{self.net}.0.{10 + i}"

    def _tbf(self, dev: str, ns: str | None) -> None:
        p = self.profile
        cmd = ["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", p.tc_rate, "burst", str(p.burst_bytes),
               "latency", "200ms"]
        _run(["ip", "netns", "exec", ns, *cmd] if ns else cmd)

    def __enter__(self) -> EmulatedNetwork:
        try:
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self._made.append(("link", self.bridge))
            _run(["ip", "link", "set", self.bridge, "up"])
            for i in range(self.hosts):
                ns, host_end = self.namespace(i), f"{self.prefix}v{i}"
                _run(["ip", "netns", "add", ns])
                self._made.append(("ns", ns))
                _run(["ip", "link", "add", host_end, "mtu", str(self.mtu), "type", "veth", "peer", "name", "eth0",
                      "mtu", str(self.mtu), "netns", ns])
                self._made.append(("link", host_end))
                _run(["ip", "link", "set", host_end, "master", self.bridge, "up"])
                for cmd in (["ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0"], ["ip", "link", "set", "lo", "up"],
                            ["ip", "link", "set", "eth0", "up"]):
                    _run(["ip", "netns", "exec", ns, *cmd])
                self._tbf(host_end, None)  # traffic into host i
                self._tbf("eth0", ns)  # traffic out of host i
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every namespace and link this network made (a veth end goes with its peer)."""
        while self._made:
            kind, name = self._made.pop()
            argv = ["ip", "netns", "del", name] if kind == "ns" else ["ip", "link", "del", name]
            subprocess.run(argv, capture_output=True)

    def popen(self, i: int, argv: Sequence[str], cpu: int | None = None, **kwargs: object) -> subprocess.Popen:
        """Start ``argv`` inside host *i* (``ip netns exec``), pinned to ``cpu`` with ``taskset`` when given."""
        pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        return subprocess.Popen(["ip", "netns", "exec", self.namespace(i), *pin, *argv], **kwargs)  # type: ignore[call-overload]


def pin_plan(processes: int) -> list[int | None]:
    """One CPU per process when the machine has one free for each, else none pinned (pinning 7 processes to 2
    shared cores would only stop the scheduler from balancing them)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= processes:
        return list(cpus[:processes])
    return [None] * processes
