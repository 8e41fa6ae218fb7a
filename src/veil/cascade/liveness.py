"""Is a pool server dead, bound to another run, or off by minutes? One session-free ping tells them apart.

Why (issue 24, findings 5 and 6): set-up probed with an open targeted loop, which a node bound to another
run refuses and a node whose clock is outside the replay windows drops, so both looked dead: ``pool
prune`` removed six live nodes still bound to a killed designer's run, and a designer 150 s ahead saw
"only 2 of 6 answered". A ping (``FLAG_PING``) is answered by every live node, bound or not, whatever
its clock; the answer, sealed end to end to this designer, carries the node's time (so the skew is
measured from the round trip's midpoint) and whether it is bound.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from veil.cascade import constants as C
from veil.cascade import pool as pool_mod
from veil.cascade.inbox import CrashDetected, Inbox
from veil.cascade.packet import open_e2e
from veil.cascade.routing import Routing
from veil.errors import VeilError

# a node is used only if its clock is this far inside the tolerance (the skew drifts, trips take time)
SKEW_MARGIN_S = 10.0


@dataclass(frozen=True)
class PingAnswer:
    """What a ping learnt about one server: ``alive`` (it answered), ``bound`` to a run, clock ``skew_s``."""

    address: str
    alive: bool
    bound: bool = False
    skew_s: float = 0.0
    rtt_s: float = 0.0

    @property
    def skewed(self) -> bool:
        return abs(self.skew_s) > C.CLOCK_SKEW_S - SKEW_MARGIN_S

    @property
    def usable(self) -> bool:
        """Alive, free, and with a clock whose packets this designer's windows accept."""
        return self.alive and not self.bound and not self.skewed

    def describe(self) -> str:
        if not self.alive:
            return "dead (no answer to a ping)"
        if self.skewed:
            return f"clock skew of {self.skew_s:+.0f} s (packets tolerate {C.CLOCK_SKEW_S:g} s)"
        return "bound to another run" if self.bound else "free"


def ping(inbox: Inbox, entries: list[pool_mod.Entry], timeout: float = C.PROBE_TIMEOUT_S) -> dict[str, PingAnswer]:
    """One ping to each of ``entries``, all in flight at once; an answer per address (dead: no answer in time)."""
    pending: dict[bytes, tuple[pool_mod.Entry, bytes, float]] = {}
    answers: dict[str, PingAnswer] = {}
    for e in entries:
        route = inbox.route([e.hop], [Routing(op=C.OP_LOOP, flags=C.FLAG_TARGET | C.FLAG_PING)])
        sent = time.time()
        try:
            pending[inbox.push(route, os.urandom(64), timeout=min(timeout, 2.0))] = (e, route.keys[0].e2e, sent)
        except CrashDetected:
            answers[e.address] = PingAnswer(e.address, alive=False)
    deadline = time.monotonic() + timeout
    while pending:
        try:
            tag, body = inbox.wait(pending, max(0.0, deadline - time.monotonic()), "ping")
        except CrashDetected:
            break
        e, key, sent = pending.pop(tag)
        back = time.time()
        try:
            status = json.loads(open_e2e(key, body, from_hop=True))
            node_time, bound = float(status["time"]), bool(status["bound"])
        except (VeilError, ValueError, KeyError, TypeError):
            answers[e.address] = PingAnswer(e.address, alive=False)  # an answer we cannot read counts for nothing
            continue
        answers[e.address] = PingAnswer(e.address, True, bound, node_time - (sent + back) / 2, back - sent)
    inbox.forget(pending)
    for e, _, _ in pending.values():
        answers[e.address] = PingAnswer(e.address, alive=False)
    return answers


def summary(answers: list[PingAnswer]) -> str:
    """``a: bound to another run; b: dead ...`` for an error message, grouped by what was found."""
    groups: dict[str, list[str]] = {}
    for a in answers:
        key = "dead" if not a.alive else "clock skew" if a.skewed else "bound to another run" if a.bound else "free"
        groups.setdefault(key, []).append(a.address if key != "clock skew" else f"{a.address} ({a.skew_s:+.0f} s)")
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items())
