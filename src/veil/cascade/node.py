"""A layer server: peels one onion layer per packet, applies its one layer, and sends the result on.

The node holds only what the designer gave it: one layer spec, its parameters and optimiser state. It never
learns the model's other layers, the cascade's length, its own position, or any address but the next one.
Every bad packet is dropped with a logged reason and the node goes on serving. This module runs on an
untrusted party, so it never imports the designer's secrets (``veil.keys``).

Sessions (who may drive the layer). A free node accepts open packets (ephemeral X25519, buildable by anyone
who read the pool file) for two ops only: relaying cover traffic, and initialisation. The init content, sealed
end to end to this node, carries a fresh per-run session secret; from then on the node is *bound*: every op
that touches its layer (init again, forward, backward, test, state, close) must be authenticated under that
secret, and open packets are relayed only as plain (non-target) cover traffic. The session ends with an
authenticated close op from its designer, or after ``SESSION_IDLE_S`` without a session packet (checked
every ``SESSION_SWEEP_S`` by the node itself, so a node whose designer died frees itself even if no packet
ever arrives again); either way the layer, its optimiser and the session's replay cache are dropped.

Liveness. A targeted open loop with ``FLAG_PING`` is answered even by a bound node, and even from outside
the replay windows its clock accepts: the answer, sealed end to end to the pinging designer, carries the
node's wall-clock time and whether it is bound. ``pool prune`` and set-up use it to tell a dead node from
one bound to another run or one whose clock is off (``veil.cascade.liveness``).
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import random
import signal
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil.cascade import constants as C
from veil.cascade import message
from veil.cascade import pool as pool_mod
from veil.cascade import transport as transport_mod
from veil.cascade.keys import fingerprint
from veil.cascade.models import NLL, build_layer, layer_state, load_layer_state, make_optimizer
from veil.cascade.packet import PacketRejected, Peeled, Peeler, open_e2e, reseal, seal_e2e
from veil.errors import VeilError

log = logging.getLogger("veil.cascade.node")
Tamper = Callable[[torch.Tensor], torch.Tensor]  # a test-only hook on each layer output (cascade/testing.py)


class Layer:
    """One layer, its optimiser, and the forward state kept until the matching backward arrives."""

    def __init__(self, spec: dict[str, Any], optimizer: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        self.spec = spec
        self.optimizer_spec = optimizer
        self.module: nn.Module = build_layer(spec)
        self.optimizer = make_optimizer(self.module, optimizer)
        if state:
            load_layer_state(self.module, self.optimizer, state)
        self._saved: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._accumulated = 0  # micro-batch backwards since the last optimiser step
        self._warm_up()

    def _warm_up(self) -> None:
        """Pay torch's lazy first-use costs (``torch.autograd.backward``'s first call, ~0.5 s, and the optimiser step)
        now, on a throwaway copy, for every kind of layer (parameter-free ones too): otherwise the first real
        backward pays them inside a training step, and could be mistaken for a crash by the time bound."""
        twin = build_layer(self.spec)
        opt = make_optimizer(twin, self.optimizer_spec)
        x = torch.zeros(2, int(self.spec["in"]) if self.spec.get("kind") == "linear" else 4, requires_grad=True)
        out = twin(x, torch.zeros(2, dtype=torch.long)) if isinstance(twin, NLL) else twin(x)
        torch.autograd.backward(out, torch.ones_like(out))  # the real path: its first call alone costs ~0.5 s
        if opt is not None:
            opt.step()

    def _run(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.module, NLL):
            return self.module(x, labels)
        return self.module(x)

    def forward(self, tag: bytes, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        inp = x.detach().requires_grad_(True)
        out = self._run(inp, labels)
        self._saved[tag] = (inp, out)
        while len(self._saved) > C.SAVED_STEPS:
            self._saved.popitem(last=False)
        return out.detach()

    def backward(self, tag: bytes, grad: torch.Tensor, micro: int = 1) -> torch.Tensor:
        """Back-propagate one micro-batch, accumulating parameter gradients; after the ``micro``-th backward of
        the step, take one optimiser step and clear them (GPipe: one update per batch, whatever m is)."""
        if tag not in self._saved:
            raise VeilError("backward for a step this layer has no forward state for")
        if not 1 <= micro <= C.MAX_LABELS:
            raise VeilError(f"micro-batch count {micro} out of range")
        inp, out = self._saved.pop(tag)
        if grad.shape != out.shape:
            raise VeilError(f"gradient shape {tuple(grad.shape)} does not match output {tuple(out.shape)}")
        torch.autograd.backward(out, grad)
        self._accumulated += 1
        if self._accumulated >= micro:
            if self.optimizer is not None:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            self._accumulated = 0
        return inp.grad if inp.grad is not None else torch.zeros_like(inp)

    def test(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._run(x, None)

    def state_blob(self) -> bytes:
        return message.encode({"layer": self.spec}, layer_state(self.module, self.optimizer))


class Node:
    """The server logic, independent of how it is run (a process via ``serve``, or a thread in tests).

    ``transport`` moves packets (default: ZeroMQ); ``mix_delay`` is the mean, in seconds, of an exponential
    (Poisson-process) delay each packet waits before it is sent on, so packets can leave in another order than
    they came (0: off, the default); ``session_idle`` is how long a session lives without a session packet.
    """

    def __init__(self, listen: str = "127.0.0.1:0", private_key: Any = None, tamper: Tamper | None = None,
                 transport: transport_mod.Transport | str | None = None, mix_delay: float = 0.0,
                 session_idle: float = C.SESSION_IDLE_S, clock: Any = time.time) -> None:
        if mix_delay < 0 or session_idle <= 0:
            raise VeilError("mix_delay must be >= 0 and session_idle > 0")
        self._clock = clock  # wall clock: replay windows and ping answers (tests skew it)
        self._peeler = Peeler(private_key, clock=clock)
        self._state_lock = threading.Lock()  # packets and the idle sweep both end sessions
        self.public_key = self._peeler.public_key
        self.tamper = tamper
        self.mix_delay = mix_delay
        self.session_idle = session_idle
        self.layer: Layer | None = None
        self.stats: Counter[str] = Counter()
        # seconds spent on training-step packets (forward, backward): crypto (peel + reseal), layer, send; and
        # their count. Init, state and test packets are left out: they would skew a per-step breakdown.
        self.timing: Counter[str] = Counter()  # float seconds: typeshed types Counter values as int, hence the ignores
        self._timing_mark: Counter[str] = Counter()  # ``timing`` when the last session ended
        self.rejections: list[str] = []
        self.transport: transport_mod.Transport = (
            transport_mod.make(transport or C.DEFAULT_TRANSPORT) if transport is None or isinstance(transport, str)
            else transport)
        self._last_session = 0.0
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._init = message.Reassembly()
        self._state_cache: list[bytes] = []
        self._listener = self.transport.listen(listen, self._receive)
        self.address = self._listener.address
        self._worker: threading.Thread | None = None
        if not self._listener.serial:
            self._worker = threading.Thread(target=self._work, name="cascade-node-worker", daemon=True)
        self._delayed: list[tuple[float, int, str, bytes]] = []
        self._delay_cv = threading.Condition()
        self._delay_thread: threading.Thread | None = None
        self._running = False
        self._thread_ready = False

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Node:
        torch.set_num_threads(1)  # process-wide; a node runs one small layer, extra threads only contend
        self._running = True
        if self._worker is not None:
            self._worker.start()
        if self.mix_delay > 0:
            self._delay_thread = threading.Thread(target=self._delay_loop, name="cascade-node-mix", daemon=True)
            self._delay_thread.start()
        threading.Thread(target=self._sweep_loop, name="cascade-node-sweep", daemon=True).start()
        self._listener.start()
        log.info("node listening on %s (%s), public key %s", self.address, self.transport.name,
                 fingerprint(self.public_key))
        return self

    def stop(self) -> None:
        self._running = False
        self._listener.stop()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=5)
        with self._delay_cv:
            self._delay_cv.notify_all()
        if self._delay_thread is not None:
            self._delay_thread.join(timeout=5)
        self.transport.close()

    @property
    def bound(self) -> bool:
        """Whether a designer's session currently holds this node."""
        return self._peeler.bound

    # --- packet path ----------------------------------------------------------------------------------------
    def _reject(self, reason: str) -> None:
        self.stats["rejected"] += 1
        if len(self.rejections) < 10_000:  # a flood of junk must not grow memory without bound
            self.rejections.append(reason)
        log.warning("rejected packet: %s", reason)

    def _receive(self, packet: bytes) -> None:
        if len(packet) not in C.PACKET_SIZES:  # cheap check before anything else: truncated or padded packets
            self._reject(f"wrong packet length {len(packet)} (packets are the {C.HEADER_SIZE}-byte header plus one"
                         " of the payload size classes)")
            return
        if self._worker is None:
            if not self._thread_ready:  # OpenMP's thread count is per calling thread: set it in this one too
                torch.set_num_threads(1)
                self._thread_ready = True
            self._handle(packet)
        else:
            self._queue.put(packet)

    def _work(self) -> None:
        torch.set_num_threads(1)
        while (packet := self._queue.get()) is not None:
            self._handle(packet)

    def _handle(self, packet: bytes) -> None:
        try:
            with self._state_lock:
                out = self.process(packet)
        except PacketRejected as exc:
            self._reject(str(exc))
            return
        except VeilError as exc:
            self._reject(f"unusable content: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a hostile packet must never stop the node
            self._reject(f"unusable content: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            return
        if out is None:
            return
        address, data, step_op = out
        if self.mix_delay > 0:
            with self._delay_cv:
                due = time.monotonic() + random.expovariate(1.0 / self.mix_delay)
                heapq.heappush(self._delayed, (due, self.stats["queued"], address, data))
                self.stats["queued"] += 1
                self._delay_cv.notify()
            return
        self._send(address, data, step_op)

    def _send(self, address: str, data: bytes, step_op: bool = False) -> None:
        t0 = time.perf_counter()
        try:
            self.transport.push(address, data, timeout=C.NODE_SEND_TIMEOUT_S)
            self.stats["sent"] += 1
        except VeilError as exc:
            self.stats["send_failed"] += 1
            log.warning("next hop unreachable, packet dropped: %s", exc)
        if step_op:
            self.timing["send"] += time.perf_counter() - t0  # type: ignore[assignment]

    def _delay_loop(self) -> None:
        """Mixing: send each packet when its exponential delay is over (not in arrival order)."""
        while self._running:
            with self._delay_cv:
                while self._running and (not self._delayed or self._delayed[0][0] > time.monotonic()):
                    wait = self._delayed[0][0] - time.monotonic() if self._delayed else None
                    self._delay_cv.wait(timeout=wait)
                if not self._running:
                    return
                _, _, address, data = heapq.heappop(self._delayed)
            self._send(address, data)

    def _sweep_loop(self) -> None:
        """End an idle session on time, without waiting for a packet (the designer may be gone for good)."""
        period = min(C.SESSION_SWEEP_S, self.session_idle / 2)
        while self._running:
            time.sleep(period)
            with self._state_lock:
                self._expire_session()

    def _expire_session(self) -> None:
        if self._peeler.bound and time.monotonic() - self._last_session > self.session_idle:
            self._end_session("session expired (idle)")

    def _end_session(self, why: str) -> None:
        run = self.timing - self._timing_mark
        self._timing_mark = Counter(self.timing)
        log.info("session timing %s", json.dumps(dict(run)))  # this run's share, for benchmarks
        self._peeler.unbind()
        self.layer = None
        self._state_cache = []
        self._init = message.Reassembly()
        log.info("%s: layer and session dropped", why)

    def process(self, packet: bytes) -> tuple[str, bytes, bool] | None:
        """Peel, check the op against the session, act, reseal: (next address, packet, whether it is a training
        step's forward or backward) or None."""
        self._expire_session()
        t0 = time.perf_counter()
        p = self._peeler.peel(packet)
        t1 = time.perf_counter()
        r = p.routing
        if r.is_final:
            raise PacketRejected("packet marks this node as its destination; nodes only relay")
        if p.session:
            self._last_session = time.monotonic()
        elif self._peeler.bound and (r.op != C.OP_LOOP or r.is_target) and not r.is_ping:
            raise PacketRejected(f"{C.OPS[r.op]} packet not authenticated under this node's session (the node is"
                                 " bound to a run; without its session only cover traffic is relayed)")
        elif r.op not in (C.OP_LOOP, C.OP_INIT):
            raise PacketRejected(f"{C.OPS[r.op]} packet without a session (no run has initialised this node)")
        self.stats[C.OPS[r.op]] += 1
        body = self._act(p)
        t2 = time.perf_counter()
        out = reseal(p, body)
        step_op = r.op in (C.OP_FORWARD, C.OP_BACKWARD)
        if step_op:
            self.timing["crypto"] += (t1 - t0) + (time.perf_counter() - t2)  # type: ignore[assignment]
            self.timing["layer"] += t2 - t1  # type: ignore[assignment]
            self.timing["packets"] += 1
        return r.next_address, out, step_op

    def _act(self, p: Peeled) -> bytes:
        r = p.routing
        if r.is_ping:
            status = {"time": self._clock(), "bound": self._peeler.bound}
            return seal_e2e(p.keys.e2e, json.dumps(status).encode(), from_hop=True)
        if r.op == C.OP_LOOP or (r.op in (C.OP_INIT, C.OP_STATE, C.OP_CLOSE) and not r.is_target):
            return p.body
        if r.op == C.OP_INIT:
            return self._init_fragment(p)
        if r.op == C.OP_STATE:
            return self._state_fragment(p)
        if r.op == C.OP_CLOSE:
            self._end_session("session closed by its designer")
            return p.body
        if self.layer is None:
            raise VeilError(f"{C.OPS[r.op]} packet before any layer was initialised")
        meta, t = message.decode(p.body)
        if r.op == C.OP_BACKWARD:
            return message.encode({}, {"g": self.layer.backward(r.tag, _tensor(t, "g"), max(1, r.frag))})
        x = _tensor(t, "x")
        if r.op == C.OP_FORWARD:
            labels = torch.frombuffer(bytearray(r.extra), dtype=torch.uint8).long() if r.extra else None
            out = self.layer.forward(r.tag, x, labels)
        else:
            out = self.layer.test(x)
        if self.tamper is not None and out.dim() > 0:
            out = self.tamper(out)  # tests only: a Byzantine node (veil.cascade.testing)
        return message.encode({}, {"x": out})

    def _init_fragment(self, p: Peeled) -> bytes:
        meta, t = message.decode(open_e2e(p.keys.e2e, p.body, from_hop=False))
        chunk = _tensor(t, "chunk").numpy().tobytes()
        blob = self._init.add(str(meta.get("msg")), int(meta.get("i", -1)), int(meta.get("n", 0)), chunk)
        if blob is not None:
            lmeta, state = message.decode(blob)
            try:
                secret = bytes.fromhex(str(lmeta["session"]))
            except (KeyError, ValueError):
                raise VeilError("init content carries no session secret") from None
            layer = Layer(dict(lmeta["layer"]), dict(lmeta.get("optimizer", {})), state)
            self._peeler.bind(secret)
            self._last_session = time.monotonic()
            self.layer = layer
            self._state_cache = []
            log.info("layer initialised: kind=%s (session bound)", self.layer.spec.get("kind"))
        return seal_e2e(p.keys.e2e, message.encode({"ok": True, "i": meta.get("i")}), from_hop=True)

    def _state_fragment(self, p: Peeled) -> bytes:
        if self.layer is None:
            raise VeilError("state requested before any layer was initialised")
        if p.routing.frag == 0 or not self._state_cache:
            self._state_cache = message.fragments(self.layer.state_blob(), C.fragment_size(p.routing.cell))
        if p.routing.frag >= len(self._state_cache):
            raise VeilError(f"state fragment {p.routing.frag} of {len(self._state_cache)} requested")
        chunk = torch.frombuffer(bytearray(self._state_cache[p.routing.frag]), dtype=torch.uint8)
        body = message.encode({"i": p.routing.frag, "n": len(self._state_cache)}, {"chunk": chunk})
        return seal_e2e(p.keys.e2e, body, from_hop=True)


def _tensor(t: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in t:
        raise VeilError(f"message has no tensor {name!r}")
    return t[name]


def serve(listen: str, pool: str | Path, tamper: Tamper | None = None, log_file: str | Path | None = None,
          transport: str = C.DEFAULT_TRANSPORT, mix_delay: float = 0.0,
          session_idle: float = C.SESSION_IDLE_S, link_delay: float = 0.0) -> None:
    """Run a node process until SIGINT/SIGTERM: fresh key pair, register in the pool, serve, deregister.
    On exit it logs one ``node timing {json}`` line (training-step packets, seconds in crypto, layer and send) for
    benchmarks; each ended session logs its own share as ``session timing {json}``."""
    torch.set_num_threads(1)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    node = Node(listen, tamper=tamper, transport=transport_mod.make(transport, link_delay), mix_delay=mix_delay,
                session_idle=session_idle).start()
    pool_mod.register(pool, node.address, node.public_key, transport=node.transport.name)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        try:
            pool_mod.unregister(pool, node.address)
        finally:
            node.stop()
            log.info("node on %s stopped: %s", node.address, dict(node.stats))
            log.info("node timing %s", json.dumps(dict(node.timing)))
            if (hold := getattr(node.transport, "stats", None)) is not None:  # link delay emulation's accuracy
                log.info("link delay hold %s", json.dumps(hold.as_dict()))
