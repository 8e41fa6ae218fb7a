"""Deployment: give each server its layer (phase 0), fetch layer state (checkpoints), and release a cascade.

Each init message is sealed end to end to its target (relays carry it without reading it) and carries the
layer spec, its state and optimiser, and a fresh 32-byte session secret for that node alone. Once a node has
acknowledged, the designer builds that node's slots in session mode, and the node accepts layer operations
only in that mode (node.py). Releasing sends each bound node an authenticated close: it drops layer and session.
"""

from __future__ import annotations

import os
import time

import torch

from veil.cascade import constants as C
from veil.cascade import message
from veil.cascade.checkpoint import Checkpoint
from veil.cascade.inbox import CrashDetected, Inbox, TimeBound
from veil.cascade.models import ModelSpec
from veil.cascade.packet import Hop, open_e2e, seal_e2e
from veil.cascade.routing import Routing
from veil.cascade.selection import Cascade, answering
from veil.errors import VeilError

DUMMY_SPEC = {"kind": "identity"}
SETUP_TIMEOUT_S = C.SETUP_TIMEOUT_S


class ByzantineDetected(VeilError):
    """The test-phase accuracy check failed, or a layer returned state for another spec."""


class Deployment:
    """Phase 0, checkpoints and release for one cascade at a time, through an ``Inbox``."""

    def __init__(self, inbox: Inbox, spec: ModelSpec, bound: TimeBound) -> None:
        self.inbox = inbox
        self.spec = spec
        self.bound = bound

    def measure_latency(self, cascade: Cascade) -> float:
        """One loop message through the whole cascade: the per-hop transfer time t behind T."""
        hops = cascade.hops
        rtt = 0.0
        for _ in range(2):  # the first trip also opens every connection; the second is the measurement
            route = self.inbox.route(hops, [Routing(op=C.OP_LOOP)] * len(hops))
            _, rtt = self.inbox.trip(route, os.urandom(64), max(self.bound.floor, SETUP_TIMEOUT_S))
        self.bound.loop_rtt = rtt
        self.bound.hops = len(hops)
        return rtt

    def deploy(self, cascade: Cascade, ckpt: Checkpoint) -> None:
        """Give each server its layer (dummies an identity) and its session secret, end-to-end sealed."""
        for pos, (entry, layer) in enumerate(zip(cascade.entries, cascade.layer_of, strict=True)):
            spec = DUMMY_SPEC if layer is None else self.spec.layers[layer]
            state = {} if layer is None else ckpt.states.get(layer, {})
            blob = message.encode({"layer": spec, "optimizer": self.spec.optimizer,
                                   "session": cascade.sessions[entry.address].hex()}, state)
            frags = message.fragments(blob, C.fragment_size(self.inbox.cell))
            msg = os.urandom(8).hex()
            cascade.attempted.add(entry.address)  # may bind even if its acknowledgement comes too late
            for i, chunk in enumerate(frags):
                self._init_trip(cascade, pos, msg, i, len(frags), chunk)
            cascade.bound.add(entry.address)

    def _init_trip(self, cascade: Cascade, pos: int, msg: str, i: int, n: int, chunk: bytes) -> None:
        hops = cascade.hops
        routes = [Routing(op=C.OP_INIT, flags=C.FLAG_TARGET if k == pos else 0) for k in range(len(hops))]
        route = self.inbox.route(hops, routes)  # the target's e2e key exists only once the header does
        inner = message.encode({"msg": msg, "i": i, "n": n},
                               {"chunk": torch.frombuffer(bytearray(chunk), dtype=torch.uint8)})
        sealed = seal_e2e(route.keys[pos].e2e, inner, from_hop=False)
        reply, _ = self.inbox.trip(route, sealed, max(self.bound.seconds(), SETUP_TIMEOUT_S))
        meta, _ = message.decode(open_e2e(route.keys[pos].e2e, reply, from_hop=True))
        if not meta.get("ok") or meta.get("i") != i:
            raise CrashDetected(f"server at position {pos} did not acknowledge its layer")

    def fetch_state(self, cascade: Cascade, layers: list[int], stateful: set[int], step: int) -> Checkpoint:
        """Ask every layer with state for it (op 5), fragment by fragment, end-to-end sealed."""
        hops, ck = cascade.hops, Checkpoint(step=step)
        for layer in layers:
            if layer not in stateful:
                ck.states[layer] = {}
                continue
            pos = cascade.position(layer)
            parts, frag, count = [], 0, 1
            while frag < count:
                routes = [Routing(op=C.OP_STATE, flags=C.FLAG_TARGET if k == pos else 0, frag=frag)
                          for k in range(len(hops))]
                route = self.inbox.route(hops, routes)
                reply, _ = self.inbox.trip(route, os.urandom(64), self.bound.seconds(),
                                           confirm=lambda: answering(self.inbox, cascade))
                meta, t = message.decode(open_e2e(route.keys[pos].e2e, reply, from_hop=True))
                count = int(meta["n"])
                if "chunk" not in t:
                    raise VeilError(f"layer {layer} returned a state fragment without data")
                parts.append(t["chunk"].numpy().tobytes())
                frag += 1
            lmeta, state = message.decode(b"".join(parts))
            if lmeta.get("layer") != self.spec.layers[layer]:
                raise ByzantineDetected(f"layer {layer} returned state for a different layer spec")
            ck.states[layer] = state
        return ck

    def release(self, cascade: Cascade, wait: float = 3.0) -> int:
        """Authenticated close to every bound node (one hop each, then back); returns how many confirmed.
        Best effort: a dead node's session lapses on its own after ``SESSION_IDLE_S``."""
        tags = []
        for entry in cascade.entries:
            if entry.address not in cascade.bound | cascade.attempted:
                continue
            hop = Hop(entry.address, entry.public_key, cascade.sessions[entry.address])
            route = self.inbox.route([hop], [Routing(op=C.OP_CLOSE, flags=C.FLAG_TARGET)])
            try:
                tags.append(self.inbox.push(route, os.urandom(64), timeout=0.5))
            except CrashDetected:
                continue
        cascade.bound.clear()
        cascade.attempted.clear()
        done, deadline = 0, time.monotonic() + wait
        pending = set(tags)
        while pending:
            try:
                tag, _ = self.inbox.wait(pending, max(0.0, deadline - time.monotonic()), "close")
            except CrashDetected:
                break
            pending.discard(tag)
            done += 1
        self.inbox.forget(pending)
        return done
