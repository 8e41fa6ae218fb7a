"""Selection: which pool servers form the cascade, in which order, and which of them are alive and free.

The cascade (order, addresses, per-node session secrets) is the designer's secret. Before choosing, the
designer pings candidates (``veil.cascade.liveness``: a session-free ping every live node answers with its
clock and whether it is bound): a dead node does not answer, a node bound to another run or with a clock
outside the replay tolerance answers and says so. Unusable entries are skipped, reported with the reason,
and replaced by other pool entries within a retry budget, so one dead node in the pool no longer fails a
run's set-up, and the error when too few are usable says which are bound, skewed or dead.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.cascade import constants as C
from veil.cascade import liveness
from veil.cascade import pool as pool_mod
from veil.cascade.inbox import CrashDetected, Inbox
from veil.cascade.packet import Hop
from veil.cascade.routing import Routing
from veil.errors import VeilError

PROBE_TIMEOUT_S = C.PROBE_TIMEOUT_S
PROBE_ROUNDS = 4  # retry budget: how many rounds of replacements for unresponsive entries


@dataclass
class Cascade:
    """The designer's secret: which server holds which layer, in order (``None`` marks a dummy), and the
    session secret sealed to each (a node counts as bound once it acknowledged its layer)."""

    entries: list[pool_mod.Entry]
    layer_of: list[int | None]
    sessions: dict[str, bytes] = field(default_factory=dict)
    bound: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)  # init sent: released too, whether or not it acknowledged

    def __post_init__(self) -> None:
        for e in self.entries:
            self.sessions.setdefault(e.address, os.urandom(C.SESSION_SECRET_SIZE))

    def hop(self, entry: pool_mod.Entry) -> Hop:
        return Hop(entry.address, entry.public_key,
                   self.sessions[entry.address] if entry.address in self.bound else None)

    @property
    def hops(self) -> list[Hop]:
        return [self.hop(e) for e in self.entries]

    def position(self, layer: int) -> int:
        return self.layer_of.index(layer)

    def describe(self, secrets: bool = False) -> list[dict[str, Any]]:
        """One dict per position; with ``secrets``, the session secrets too (for a 0600 file only)."""
        out = []
        for e, li in zip(self.entries, self.layer_of, strict=True):
            d: dict[str, Any] = {"address": e.address, "public_key": e.public_key.hex(), "layer": li,
                                 "transport": e.transport}
            if secrets and e.address in self.bound:
                d["session"] = self.sessions[e.address].hex()
            out.append(d)
        return out

    @classmethod
    def from_description(cls, hops: list[dict[str, Any]]) -> Cascade:
        """Inverse of ``describe(secrets=True)``: attach to a cascade that another designer process deployed."""
        try:
            entries = [pool_mod.Entry(h["address"], bytes.fromhex(h["public_key"]),
                                      transport=h.get("transport", "grpc")) for h in hops]
            sessions = {h["address"]: bytes.fromhex(h["session"]) for h in hops if "session" in h}
            c = cls(entries, [h["layer"] for h in hops], sessions=sessions, bound=set(sessions))
        except (KeyError, ValueError, TypeError) as exc:
            raise VeilError(f"cascade description is malformed ({type(exc).__name__}: {exc})") from None
        return c


def probe(inbox: Inbox, entries: list[pool_mod.Entry], timeout: float = PROBE_TIMEOUT_S,
          hop_of: Callable[[pool_mod.Entry], Hop] | None = None
          ) -> tuple[list[pool_mod.Entry], list[pool_mod.Entry]]:
    """(alive and free, unresponsive) among ``entries``: one targeted loop each, all in flight at once; open
    (``entry.hop``) unless ``hop_of`` gives the hop, e.g. in session mode for a node bound to this run."""
    pending: dict[bytes, pool_mod.Entry] = {}
    dead: list[pool_mod.Entry] = []
    for e in entries:
        route = inbox.route([hop_of(e) if hop_of else e.hop], [Routing(op=C.OP_LOOP, flags=C.FLAG_TARGET)])
        try:
            pending[inbox.push(route, os.urandom(64), timeout=min(timeout, 2.0))] = e
        except CrashDetected:
            dead.append(e)
    alive: list[pool_mod.Entry] = []
    deadline = time.monotonic() + timeout
    while pending:
        try:
            tag, _ = inbox.wait(pending, max(0.0, deadline - time.monotonic()), "probe")
        except CrashDetected:
            break
        alive.append(pending.pop(tag))
    inbox.forget(pending)
    dead += pending.values()
    order = {e.address: i for i, e in enumerate(entries)}
    return sorted(alive, key=lambda e: order[e.address]), dead


def answering(inbox: Inbox, cascade: Cascade, timeout: float = C.SETUP_TIMEOUT_S) -> bool:
    """Whether every server of ``cascade`` answers a targeted session loop within ``timeout``: asked when a
    round trip missed its time bound T, to tell a crashed server (no connection, or no answer) from a slow
    machine (every server answers, so the trip's packets are still on their way). A node handles its packets
    in arrival order, so its answer also means what reached it before was handled."""
    return not probe(inbox, cascade.entries, timeout, hop_of=cascade.hop)[1]


def select(inbox: Inbox, pool: Path, remote_layers: list[int], dummies: int, rng: random.Random,
           excluded: set[str], events: list[dict[str, Any]], rounds: int = PROBE_ROUNDS) -> Cascade:
    """n = p + r live, free servers drawn at random from the pool; dummies at random positions between layers.

    Unresponsive candidates are reported in ``events`` (``skipped``), excluded, and replaced from the rest of
    the pool, for at most ``rounds`` rounds."""
    p, r = len(remote_layers), dummies
    n = p + r
    if n + 1 > C.MAX_HOPS:
        raise VeilError(f"a cascade of {n} servers exceeds the packet's {C.MAX_HOPS - 1} hops")
    usable = [e for e in pool_mod.load(pool) if e.address not in excluded and e.transport == inbox.transport.name]
    if len(usable) < n:
        raise VeilError(f"pool {pool} has {len(usable)} usable {inbox.transport.name} servers; this cascade needs {n}")
    candidates = rng.sample(usable, n)
    rest = [e for e in usable if e not in candidates]
    rng.shuffle(rest)
    chosen: list[pool_mod.Entry] = []
    skipped: list[liveness.PingAnswer] = []
    skews: dict[str, float] = {}
    for _ in range(rounds):
        # a candidate that the rest of the pool cannot replace gets the set-up bound, not the short probe bound:
        # on a loaded machine a live node can take seconds to answer, and skipping it would fail the run anyway
        spare = len(rest) >= len(candidates)
        answers = liveness.ping(inbox, candidates, PROBE_TIMEOUT_S if spare else C.SETUP_TIMEOUT_S)
        chosen += [e for e in candidates if answers[e.address].usable]
        skews.update({a.address: round(a.skew_s, 1) for a in answers.values() if a.alive})
        dead = [e for e in candidates if not answers[e.address].usable]
        if dead:
            skipped += [answers[e.address] for e in dead]
            excluded |= {e.address for e in dead}
            events.append({"event": "skipped", "servers": [e.address for e in dead],
                           "reason": "; ".join(f"{e.address}: {answers[e.address].describe()}" for e in dead)})
        if len(chosen) == n:
            break
        candidates, rest = rest[: n - len(chosen)], rest[n - len(chosen) :]
        if not candidates:
            break
    if len(chosen) < n:
        raise VeilError(f"pool {pool}: only {len(chosen)} of the {n} servers this cascade needs are usable "
                        f"(skipped: {liveness.summary(skipped) or 'none'}); 'veil cascade pool prune' removes "
                        "dead entries only; a node bound to a run whose designer is gone frees itself after its "
                        f"session's idle timeout ({C.SESSION_IDLE_S:g} s by default)")
    events.append({"event": "clock", "skew_s": {e.address: skews.get(e.address, 0.0) for e in chosen}})
    dummy_pos = set(rng.sample(range(n), r))
    it = iter(remote_layers)
    layer_of = [None if i in dummy_pos else next(it) for i in range(n)]
    return Cascade(chosen, layer_of)
