"""The designer (client): picks a cascade from the pool, packs every packet, and drives the four phases.

Only the designer knows the whole model, the cascade's order and every address; it alone builds headers.
It is also the last hop of every packet it sends (a "loop message to itself", paper section 2.2), so
replies come back through the same onion format to its own small gRPC inbox.

Failure handling (paper section 4):
- crash: every round trip has a time bound ``T = margin * (n*delta + (n+1)*t)`` from measured loop latency
  ``t`` per hop and observed processing time ``delta``; past it the whole cascade is replaced (the designer
  cannot tell which server failed), the layers are re-initialised from the last checkpoint (nodes return
  their state, end-to-end encrypted, every ``checkpoint_every`` steps), and training resumes from that step.
  Batch order depends only on (seed, step), so the resumed run is the run that would have happened.
- Byzantine: at each epoch's test phase the held-out accuracy must reach ``min_accuracy``; if not, the
  cascade is replaced and training resumes from the last checkpoint that passed this check.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from veil.cascade import constants as C
from veil.cascade import data as D
from veil.cascade import message, transport
from veil.cascade import pool as pool_mod
from veil.cascade.checkpoint import Checkpoint
from veil.cascade.keys import HopKeys
from veil.cascade.models import ModelSpec, build_all, layer_state
from veil.cascade.packet import (
    Hop,
    PacketRejected,
    Peeler,
    build_header,
    build_packet,
    open_e2e,
    seal_e2e,
    seal_packet,
)
from veil.cascade.routing import Routing
from veil.errors import VeilError

DUMMY_SPEC = {"kind": "identity"}
SETUP_TIMEOUT_S = 10.0  # deploy and first contact: connection set-up and layer construction, not steps


class CrashDetected(VeilError):
    """No response within the time bound T, or the first hop refused the connection."""


class ByzantineDetected(VeilError):
    """The test-phase accuracy check failed: some server corrupted its output."""


@dataclass
class Cascade:
    """The designer's secret: which server holds which layer, in order (``None`` marks a dummy)."""

    entries: list[pool_mod.Entry]
    layer_of: list[int | None]

    @property
    def hops(self) -> list[Hop]:
        return [e.hop for e in self.entries]

    def position(self, layer: int) -> int:
        return self.layer_of.index(layer)

    def describe(self) -> list[dict[str, Any]]:
        return [{"address": e.address, "public_key": e.public_key.hex(), "layer": li}
                for e, li in zip(self.entries, self.layer_of, strict=True)]


@dataclass(frozen=True)
class _Route:
    """A trip's header, built ahead of its body: first hop, header, every hop's keys, reply tag, op."""

    first: str
    header: bytes
    keys: list[HopKeys]
    tag: bytes
    op: int


@dataclass
class TrainResult:
    accuracy: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    final: Checkpoint | None = None


class Designer:
    """Client side of MixNN. Use as a context manager so its inbox server is always stopped."""

    def __init__(self, pool: str | Path, spec: ModelSpec, *, dummies: int = 1, seed: int = 0,
                 listen: str = "127.0.0.1:0", loop_rate: int = 1, checkpoint_every: int | None = None,
                 timeout_floor: float = 2.0, timeout_margin: float = 10.0, min_accuracy: float | None = None,
                 max_replacements: int = 3, keep_loss: bool = False, select_seed: int | None = None,
                 cell: int | None = None) -> None:
        if dummies < 0 or loop_rate < 0:
            raise VeilError("dummies and loop_rate must be >= 0")
        if spec.batch > C.MAX_LABELS:
            raise VeilError(f"batch {spec.batch} exceeds the {C.MAX_LABELS} labels one header slot carries")
        self.pool_path = Path(pool)
        self.spec = spec
        self.seed = seed
        self.dummies = dummies
        self.loop_rate = loop_rate
        self.checkpoint_every = checkpoint_every
        self.timeout_floor = timeout_floor
        self.timeout_margin = timeout_margin
        self.min_accuracy = min_accuracy
        self.max_replacements = max_replacements
        self.keep_loss = keep_loss and spec.layers[-1]["kind"] == "nll"
        # layers the cascade runs: everything, or everything but the loss when the designer keeps it
        self.remote_layers = list(range(len(spec.layers) - (1 if self.keep_loss else 0)))
        self._rng = random.Random(select_seed if select_seed is not None else int.from_bytes(os.urandom(8)))
        self._peeler = Peeler()
        self._cv = threading.Condition()
        self._awaiting: set[bytes] = set()
        self._inbox: dict[bytes, tuple[Routing, bytes]] = {}
        self._loops: set[bytes] = set()
        self.loops_sent = 0
        self.loops_returned = 0
        self.loops_lost = 0
        self.rejected: list[str] = []
        self._server = transport.Server(listen, self._on_packet)
        self._server.start()
        self._client = transport.Client()
        self.hop = Hop(self._server.address, self._peeler.public_key)
        self.excluded: set[str] = set()
        self.cascade: Cascade | None = None
        self.events: list[dict[str, Any]] = []
        self._loop_rtt = 0.0
        self._max_rtt = 0.0
        self.initial = Checkpoint(step=0, verified=True, states={
            i: layer_state(m, None) for i, m in enumerate(build_all(spec, seed)) if i in self.remote_layers})
        # the run's one packet size: chosen here, before any packet exists, and used for every packet
        if cell is not None and cell not in C.CELL_SIZES:
            raise VeilError(f"cell {cell} is not one of the packet size classes {C.CELL_SIZES}")
        self.cell = cell or C.cell_for(largest_message(spec))
        self.packet_size = C.packet_size(self.cell)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> Designer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.stop()
        self._client.close()

    # --- inbox ----------------------------------------------------------------------------------------------
    def _on_packet(self, packet: bytes, peer: str) -> None:
        try:
            p = self._peeler.peel(packet)
        except PacketRejected as exc:
            self.rejected.append(str(exc))
            return
        if not p.routing.is_final:
            self.rejected.append("packet for the designer is not marked final")
            return
        with self._cv:
            tag = p.routing.tag
            if tag in self._loops:
                self._loops.discard(tag)
                self.loops_returned += 1
            elif tag in self._awaiting:
                self._inbox[tag] = (p.routing, p.body)
                self._cv.notify_all()

    def timeout(self) -> float:
        """The crash bound T for one trip through the cascade: ``margin * (n*delta + (n+1)*t)``."""
        n = len(self.cascade.entries) if self.cascade else 1
        t = self._loop_rtt / (n + 1)
        delta = max(0.0, (self._max_rtt - self._loop_rtt) / n)
        return max(self.timeout_floor, self.timeout_margin * (n * delta + (n + 1) * t))

    def _route(self, path: list[Hop], routes: list[Routing]) -> _Route:
        """The header of a trip along ``path`` + designer, built before (and apart from) its body."""
        tag = os.urandom(C.STEP_TAG_SIZE)
        op = routes[0].op
        header, keys = build_header(path + [self.hop], routes + [Routing(op=op, tag=tag)], self.cell)
        return _Route(path[0].address, header, keys, tag, op)

    def _trip(self, path: list[Hop], routes: list[Routing], body: bytes,
              timeout: float | None = None) -> tuple[bytes, list[HopKeys], float]:
        """Send one packet along ``path`` + designer and wait for it; CrashDetected past the bound."""
        return self._go(self._route(path, routes), body, timeout)

    def _go(self, route: _Route, body: bytes, timeout: float | None = None,
            during: Callable[[], None] | None = None) -> tuple[bytes, list[HopKeys], float]:
        """Seal ``body`` under a prepared header, send it, run ``during`` (designer-side work that overlaps the
        cascade's processing, e.g. the next headers) and wait for the reply; CrashDetected past the bound."""
        pkt = seal_packet(route.keys[0].payload, route.header, body, self.cell)
        tag = route.tag
        with self._cv:
            self._awaiting.add(tag)
        bound = timeout if timeout is not None else self.timeout()
        t0 = time.perf_counter()
        try:
            try:
                self._client.push(route.first, pkt)
            except VeilError as exc:
                raise CrashDetected(f"first hop unreachable: {exc}") from None
            if during is not None:
                during()
            with self._cv:
                left = max(0.0, bound - (time.perf_counter() - t0))
                if not self._cv.wait_for(lambda: tag in self._inbox, timeout=left):
                    raise CrashDetected(f"no {C.OPS[route.op]} response within T = {bound:.2f} s")
                _, reply = self._inbox.pop(tag)
        finally:
            with self._cv:
                self._awaiting.discard(tag)
        return reply, route.keys, time.perf_counter() - t0

    # --- cascade selection and latency ----------------------------------------------------------------------
    def select(self) -> Cascade:
        """n = p + r servers drawn at random from the pool, dummies at random positions between layers."""
        p, r = len(self.remote_layers), self.dummies
        n = p + r
        if n + 1 > C.MAX_HOPS:
            raise VeilError(f"a cascade of {n} servers exceeds the packet's {C.MAX_HOPS - 1} hops")
        usable = [e for e in pool_mod.load(self.pool_path) if e.address not in self.excluded]
        if len(usable) < n:
            raise VeilError(f"pool {self.pool_path} has {len(usable)} usable servers; this cascade needs {n}")
        chosen = self._rng.sample(usable, n)
        dummy_pos = set(self._rng.sample(range(n), r))
        it = iter(self.remote_layers)
        layer_of = [None if i in dummy_pos else next(it) for i in range(n)]
        return Cascade(chosen, layer_of)

    def measure_latency(self) -> float:
        """One loop message through the whole cascade: the per-hop transfer time t behind T."""
        assert self.cascade is not None
        hops = self.cascade.hops
        for _ in range(2):  # the first trip also opens every connection; the second is the measurement
            _, _, rtt = self._trip(hops, [Routing(op=C.OP_LOOP)] * len(hops), os.urandom(64),
                                   timeout=max(self.timeout_floor, SETUP_TIMEOUT_S))
        self._loop_rtt = rtt
        return rtt

    def send_loops(self, k: int | None = None) -> None:
        """Cover traffic: loop messages over random pool servers back to the designer, not waited for."""
        self._send_loops(self._build_loops(k))

    def _build_loops(self, k: int | None = None) -> list[tuple[str, bytes, bytes]]:
        """(first address, packet, tag) of ``k`` (default ``loop_rate``) loop messages over 1-3 random servers."""
        k = self.loop_rate if k is None else k
        if not k:
            return []
        entries = [e for e in pool_mod.load(self.pool_path) if e.address not in self.excluded]
        loops = []
        for _ in range(k if entries else 0):
            path = [e.hop for e in self._rng.sample(entries, self._rng.randint(1, min(3, len(entries))))]
            tag = os.urandom(C.STEP_TAG_SIZE)
            pkt, _ = build_packet(path + [self.hop], [Routing(op=C.OP_LOOP)] * len(path)
                                  + [Routing(op=C.OP_LOOP, tag=tag)], os.urandom(64), self.cell)
            loops.append((path[0].address, pkt, tag))
        return loops

    def _send_loops(self, loops: list[tuple[str, bytes, bytes]]) -> None:
        """Hand prepared loop packets to gRPC without waiting: cover traffic never blocks a training step."""
        for first, pkt, tag in loops:
            with self._cv:
                self._loops.add(tag)

            def lost(_reason: str, tag: bytes = tag) -> None:
                with self._cv:
                    self._loops.discard(tag)
                    self.loops_lost += 1

            try:
                self._client.send(first, pkt, on_error=lost, timeout=2.0)
                self.loops_sent += 1
            except (VeilError, ValueError, RuntimeError):
                lost("")

    # --- phase 0: initialisation ----------------------------------------------------------------------------
    def deploy(self, ckpt: Checkpoint) -> None:
        """Give each server its layer (dummies an identity), through the cascade, end-to-end sealed."""
        assert self.cascade is not None
        hops = self.cascade.hops
        for pos, layer in enumerate(self.cascade.layer_of):
            spec = DUMMY_SPEC if layer is None else self.spec.layers[layer]
            state = {} if layer is None else ckpt.states.get(layer, {})
            blob = message.encode({"layer": spec, "optimizer": self.spec.optimizer}, state)
            frags = message.fragments(blob, C.fragment_size(self.cell))
            msg = os.urandom(8).hex()
            for i, chunk in enumerate(frags):
                routes = [Routing(op=C.OP_INIT, flags=C.FLAG_TARGET if k == pos else 0) for k in range(len(hops))]
                self._init_trip(hops, routes, pos, msg, i, len(frags), chunk)

    def _init_trip(self, hops: list[Hop], routes: list[Routing], pos: int, msg: str, i: int, n: int,
                   chunk: bytes) -> None:
        # the e2e key of the target is only known once the header is built: build, seal, then send
        tag = os.urandom(C.STEP_TAG_SIZE)
        header, keys = build_header(hops + [self.hop], routes + [Routing(op=C.OP_INIT, tag=tag)], self.cell)
        inner = message.encode({"msg": msg, "i": i, "n": n},
                               {"chunk": torch.frombuffer(bytearray(chunk), dtype=torch.uint8)})
        pkt = seal_packet(keys[0].payload, header, seal_e2e(keys[pos].e2e, inner, from_hop=False), self.cell)
        reply = self._await_packet(hops[0].address, pkt, tag, C.OP_INIT)
        meta, _ = message.decode(open_e2e(keys[pos].e2e, reply, from_hop=True))
        if not meta.get("ok") or meta.get("i") != i:
            raise CrashDetected(f"server at position {pos} did not acknowledge its layer")

    def _await_packet(self, first: str, pkt: bytes, tag: bytes, op: int) -> bytes:
        with self._cv:
            self._awaiting.add(tag)
        bound = max(self.timeout(), SETUP_TIMEOUT_S)
        try:
            try:
                self._client.push(first, pkt)
            except VeilError as exc:
                raise CrashDetected(f"first hop unreachable: {exc}") from None
            with self._cv:
                if not self._cv.wait_for(lambda: tag in self._inbox, timeout=bound):
                    raise CrashDetected(f"no {C.OPS[op]} response within T = {bound:.2f} s")
                return self._inbox.pop(tag)[1]
        finally:
            with self._cv:
                self._awaiting.discard(tag)

    def setup(self, ckpt: Checkpoint | None = None) -> Cascade:
        """Select a cascade, measure its latency, deploy the layers (from ``ckpt`` or the initial weights)."""
        self.cascade = self.select()
        self._max_rtt = 0.0
        self.measure_latency()
        self.deploy(ckpt or self.initial)
        self.events.append({"event": "deployed", "step": (ckpt or self.initial).step,
                            "servers": [e.address for e in self.cascade.entries]})
        return self.cascade

    def replace(self, reason: str, ckpt: Checkpoint) -> None:
        """Swap every server for fresh ones (the designer cannot locate the faulty one) and redeploy."""
        for attempt in range(self.max_replacements + 1):
            if len([e for e in self.events if e["event"] == "replaced"]) >= self.max_replacements:
                raise VeilError(f"gave up after {self.max_replacements} cascade replacements ({reason})")
            if self.cascade is not None:
                self.excluded |= {e.address for e in self.cascade.entries}
            old = [e.address for e in self.cascade.entries] if self.cascade else []
            self.events.append({"event": "replaced", "reason": reason, "resume_step": ckpt.step, "old": old})
            try:
                self.setup(ckpt)
                return
            except CrashDetected as exc:
                reason = f"{exc} (during replacement attempt {attempt + 1})"
        raise VeilError(f"gave up after {self.max_replacements} cascade replacements ({reason})")

    # --- phases 1 and 2: one training step ------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward (op 1) then backward (op 2) of one batch; returns the loss."""
        assert self.cascade is not None
        hops, layer_of = self.cascade.hops, self.cascade.layer_of
        tags = [os.urandom(C.STEP_TAG_SIZE) for _ in hops]
        labels = bytes(y.to(torch.uint8).tolist())
        fwd = [Routing(op=C.OP_FORWARD, tag=tags[k],
                       extra=labels if li is not None and self.spec.layers[li]["kind"] == "nll" else b"")
               for k, li in enumerate(layer_of)]
        bwd = [Routing(op=C.OP_BACKWARD, tag=tags[k]) for k in range(len(hops))][::-1]
        ahead: dict[str, Any] = {}

        def prepare() -> None:  # while the forward pass runs in the cascade: the backward header and the loops
            ahead["bwd"] = self._route(hops[::-1], bwd)
            ahead["loops"] = self._build_loops()

        reply, _, rtt_f = self._go(self._route(hops, fwd), message.encode({}, {"x": x}), during=prepare)
        out = _tensor(reply, "x")
        if self.keep_loss:
            logp = out.detach().requires_grad_(True)
            loss = torch.nn.functional.nll_loss(logp, y)
            loss.backward()
            grad, value = logp.grad, float(loss.detach())
        else:
            grad, value = torch.ones_like(out), float(out)
        _, _, rtt_b = self._go(ahead["bwd"], message.encode({}, {"g": grad}))
        self._max_rtt = max(self._max_rtt, rtt_f, rtt_b)
        self._send_loops(ahead["loops"])
        return value

    # --- phase 3: test --------------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Test-phase outputs (log-probabilities) for ``x``, in batches through the cascade (op 3)."""
        assert self.cascade is not None
        hops, outs = self.cascade.hops, []
        for i in range(0, len(x), self.spec.batch):
            reply, _, _ = self._trip(hops, [Routing(op=C.OP_TEST)] * len(hops),
                                     message.encode({}, {"x": x[i : i + self.spec.batch]}))
            outs.append(_tensor(reply, "x"))
        return torch.cat(outs) if outs else torch.empty(0)

    def test(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Held-out accuracy through the cascade: the designer's own metric."""
        return int((self.predict(x).argmax(1) == y).sum()) / len(x) if len(x) else 0.0

    # --- checkpoints ----------------------------------------------------------------------------------------
    def fetch_state(self, step: int) -> Checkpoint:
        """Ask every layer with state for it (op 5), fragment by fragment, end-to-end sealed."""
        assert self.cascade is not None
        hops, ck = self.cascade.hops, Checkpoint(step=step)
        for layer in self.remote_layers:
            if not self.initial.states.get(layer):
                ck.states[layer] = {}
                continue
            pos = self.cascade.position(layer)
            parts, frag, count = [], 0, 1
            while frag < count:
                routes = [Routing(op=C.OP_STATE, flags=C.FLAG_TARGET if k == pos else 0, frag=frag)
                          for k in range(len(hops))]
                reply, keys, _ = self._trip(hops, routes, os.urandom(64))
                meta, t = message.decode(open_e2e(keys[pos].e2e, reply, from_hop=True))
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

    # --- the whole run --------------------------------------------------------------------------------------
    def train(self, ds: D.Dataset, epochs: int,
              on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
        """Train for ``epochs``, recovering from crashes and Byzantine servers; returns metrics and events."""
        if self.cascade is None:
            self.setup()
        spe = D.steps_per_epoch(len(ds.x_train), self.spec.batch)
        total, every = epochs * spe, self.checkpoint_every or spe
        res = TrainResult()
        last, verified = self.initial, self.initial
        step, epoch_t0 = 0, time.perf_counter()
        elapsed = 0.0
        while step < total:
            try:
                x, y = D.batch_at(ds, self.spec.batch, self.seed, step)
                loss = self.step(x, y)
                step += 1
                res.losses.append(loss)
                if on_step:
                    on_step(step, total, loss)
                end_epoch = step % spe == 0
                if end_epoch:
                    elapsed += time.perf_counter() - epoch_t0
                    res.epoch_seconds.append(elapsed)
                if step % every == 0 or end_epoch:
                    last = self.fetch_state(step)
                if end_epoch and self.min_accuracy is not None:
                    acc = self.test(ds.x_test, ds.y_test)
                    res.epoch_accuracy.append(acc)
                    if acc < self.min_accuracy:
                        self.events.append({"event": "byzantine", "step": step, "accuracy": acc,
                                            "servers": [e.address for e in self.cascade.entries]})
                        raise ByzantineDetected(f"test accuracy {acc:.3f} below {self.min_accuracy}")
                    last.verified = True
                    verified = last
                if end_epoch:
                    epoch_t0, elapsed = time.perf_counter(), 0.0
            except CrashDetected as exc:
                self.events.append({"event": "crash", "step": step, "detail": str(exc)})
                self.replace(str(exc), last)
                step = self._rewind(last, spe, res)
                epoch_t0, elapsed = time.perf_counter(), 0.0
            except ByzantineDetected as exc:
                last = verified
                self.replace(str(exc), verified)
                step = self._rewind(verified, spe, res)
                epoch_t0, elapsed = time.perf_counter(), 0.0
        res.final = last if last.step == total else self.fetch_state(total)
        res.accuracy = self.test(ds.x_test, ds.y_test)
        res.events = list(self.events)
        return res

    @staticmethod
    def _rewind(ckpt: Checkpoint, spe: int, res: TrainResult) -> int:
        """Drop per-epoch records after the checkpoint's epoch; the resumed run redoes them."""
        done_epochs = ckpt.step // spe
        del res.epoch_seconds[done_epochs:]
        del res.losses[ckpt.step :]
        del res.epoch_accuracy[done_epochs:]
        return ckpt.step


def largest_message(spec: ModelSpec) -> int:
    """Bytes of the largest body a forward, backward or test packet of this model carries at full batch.

    Walks the layer widths (the input, every layer's output and so every gradient) and encodes a zero batch
    of each, so the figure is the real framed size, not an estimate; a small margin covers meta variations.
    """
    first = next((int(layer["in"]) for layer in spec.layers if layer.get("kind") == "linear"), None)
    if first is None:  # no layer fixes a width: fall back to the default class
        return C.body_capacity(C.DEFAULT_CELL)
    widths, width = [first], first
    for layer in spec.layers:
        if layer.get("kind") == "linear":
            width = int(layer["out"])
            widths.append(width)
    return max(len(message.encode({}, {"x": torch.zeros(spec.batch, w)})) for w in set(widths)) + 256


def _tensor(body: bytes, name: str) -> torch.Tensor:
    _, t = message.decode(body)
    if name not in t:
        raise VeilError(f"reply has no tensor {name!r}")
    return t[name]
