"""A layer server: peels one onion layer per packet, applies its one layer, and sends the result on.

The node holds only what the designer gave it: one layer spec, its parameters and optimiser state. It never
learns the model's other layers, the cascade's length, its own position, or any address but the next one.
Every bad packet is dropped with a logged reason and the node goes on serving. This module runs on an
untrusted party, so it never imports the designer's secrets (``veil.keys``).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from veil.cascade import constants as C
from veil.cascade import message, transport
from veil.cascade import pool as pool_mod
from veil.cascade.keys import fingerprint
from veil.cascade.models import NLL, build_layer, layer_state, load_layer_state, make_optimizer
from veil.cascade.packet import PacketRejected, Peeled, Peeler, open_e2e, reseal, seal_e2e
from veil.errors import VeilError

log = logging.getLogger("veil.cascade.node")
MISBEHAVIOURS = ("corrupt",)


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

    def backward(self, tag: bytes, grad: torch.Tensor) -> torch.Tensor:
        if tag not in self._saved:
            raise VeilError("backward for a step this layer has no forward state for")
        inp, out = self._saved.pop(tag)
        if grad.shape != out.shape:
            raise VeilError(f"gradient shape {tuple(grad.shape)} does not match output {tuple(out.shape)}")
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(out, grad)
        if self.optimizer is not None:
            self.optimizer.step()
        return inp.grad if inp.grad is not None else torch.zeros_like(inp)

    def test(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._run(x, None)

    def state_blob(self) -> bytes:
        return message.encode({"layer": self.spec}, layer_state(self.module, self.optimizer))


class Node:
    """The server logic, independent of how it is run (a process via ``serve``, or a thread in tests)."""

    def __init__(self, listen: str = "127.0.0.1:0", private_key: Any = None, misbehave: str | None = None) -> None:
        if misbehave is not None and misbehave not in MISBEHAVIOURS:
            raise VeilError(f"unknown misbehaviour {misbehave!r} (one of {', '.join(MISBEHAVIOURS)})")
        self._peeler = Peeler(private_key)
        self.public_key = self._peeler.public_key
        self.misbehave = misbehave
        self.layer: Layer | None = None
        self.stats: Counter[str] = Counter()
        self.rejections: list[str] = []
        self._client = transport.Client()
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._init = message.Reassembly()
        self._state_cache: list[bytes] = []
        self._server = transport.Server(listen, self._enqueue)
        self.address = self._server.address
        self._worker = threading.Thread(target=self._work, name="cascade-node-worker", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Node:
        self._server.start()
        self._worker.start()
        log.info("node listening on %s, public key %s", self.address, fingerprint(self.public_key))
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._server.stop()
        self._worker.join(timeout=5)
        self._client.close()

    # --- packet path ----------------------------------------------------------------------------------------
    def _reject(self, reason: str) -> None:
        self.stats["rejected"] += 1
        self.rejections.append(reason)
        log.warning("rejected packet: %s", reason)

    def _enqueue(self, packet: bytes, peer: str) -> None:
        if len(packet) not in C.PACKET_SIZES:  # cheap check before queueing: truncated or padded packets
            self._reject(f"wrong packet length {len(packet)} (packets are the {C.HEADER_SIZE}-byte header plus one"
                         " of the payload size classes)")
            return
        self._queue.put(packet)

    def _work(self) -> None:
        torch.set_num_threads(1)
        while (packet := self._queue.get()) is not None:
            try:
                out = self.process(packet)
            except PacketRejected as exc:
                self._reject(str(exc))
                continue
            except VeilError as exc:
                self._reject(f"unusable content: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a hostile packet must never stop the node
                self._reject(f"unusable content: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                continue
            if out is None:
                continue
            address, data = out
            try:
                self._client.push(address, data)
                self.stats["sent"] += 1
            except VeilError as exc:
                self.stats["send_failed"] += 1
                log.warning("next hop unreachable, packet dropped: %s", exc)

    def process(self, packet: bytes) -> tuple[str, bytes] | None:
        """Peel, act on the op, reseal: returns (next address, packet) or None when nothing goes on."""
        p = self._peeler.peel(packet)
        r = p.routing
        self.stats[C.OPS[r.op]] += 1
        log.debug("packet op=%s", C.OPS[r.op])
        if r.is_final:
            raise PacketRejected("packet marks this node as its destination; nodes only relay")
        body = self._act(p)
        return r.next_address, reseal(p, body)

    def _act(self, p: Peeled) -> bytes:
        r = p.routing
        if r.op == C.OP_LOOP or (r.op in (C.OP_INIT, C.OP_STATE) and not r.is_target):
            return p.body
        if r.op == C.OP_INIT:
            return self._init_fragment(p)
        if r.op == C.OP_STATE:
            return self._state_fragment(p)
        if self.layer is None:
            raise VeilError(f"{C.OPS[r.op]} packet before any layer was initialised")
        meta, t = message.decode(p.body)
        if r.op == C.OP_BACKWARD:
            return message.encode({}, {"g": self.layer.backward(r.tag, _tensor(t, "g"))})
        x = _tensor(t, "x")
        if r.op == C.OP_FORWARD:
            labels = torch.frombuffer(bytearray(r.extra), dtype=torch.uint8).long() if r.extra else None
            out = self.layer.forward(r.tag, x, labels)
        else:
            out = self.layer.test(x)
        if self.misbehave == "corrupt" and out.dim() > 0:
            out = torch.randn_like(out) * (out.std() + 1.0)  # Byzantine: plausible-looking garbage
        return message.encode({}, {"x": out})

    def _init_fragment(self, p: Peeled) -> bytes:
        meta, t = message.decode(open_e2e(p.keys.e2e, p.body, from_hop=False))
        chunk = _tensor(t, "chunk").numpy().tobytes()
        blob = self._init.add(str(meta.get("msg")), int(meta.get("i", -1)), int(meta.get("n", 0)), chunk)
        if blob is not None:
            lmeta, state = message.decode(blob)
            self.layer = Layer(dict(lmeta["layer"]), dict(lmeta.get("optimizer", {})), state)
            self._state_cache = []
            log.info("layer initialised: kind=%s", self.layer.spec.get("kind"))
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


def serve(listen: str, pool: str | Path, misbehave: str | None = None, log_file: str | Path | None = None) -> None:
    """Run a node process until SIGINT/SIGTERM: fresh key pair, register in the pool, serve, deregister."""
    torch.set_num_threads(1)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    node = Node(listen, misbehave=misbehave).start()
    pool_mod.register(pool, node.address, node.public_key)
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
