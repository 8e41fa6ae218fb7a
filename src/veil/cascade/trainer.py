"""Trainer: one training step (phases 1 and 2) with GPipe-style micro-batches, and the test phase (3).

A batch of B samples is split into m micro-batches. All m forward packets enter the cascade at once, so the
nodes work on different micro-batches at the same time; each returning loss is answered at once with its
backward, whose gradient seed is ``b_j / B`` (micro-batch size over batch size), so the summed gradients are
the full batch's mean-loss gradient. Every backward packet tells each layer ``m``; a layer accumulates and
takes one optimiser step after the m-th, so the update is local training's, up to floating-point summation
order (m = 1 is bit for bit the same). The next batch is sent only after every backward came back: its forward
at a layer needs that layer's update, and only the last backward reply says the first layer has made it.

Headers cost no data, only labels and fresh tags, so they are built off the critical path: each forward leaves
as soon as its own header is sealed (not after all m), and while the backwards travel the designer builds the
*next* step's forward headers when the caller passes the next labels (``upcoming``). A prepared header is used
only for the same cascade (same hops, sessions and order) and the same labels, else dropped and built afresh;
its tags are fresh random bytes either way and it is never used twice, so the wire sees the same packets, earlier.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import torch

from veil.cascade import constants as C
from veil.cascade import message
from veil.cascade.inbox import Inbox, Route, TimeBound
from veil.cascade.models import ModelSpec
from veil.cascade.packet import Hop
from veil.cascade.routing import Routing
from veil.cascade.selection import Cascade, answering
from veil.errors import VeilError

# A prepared header carries the replay window it was built in; hops accept a window for about CLOCK_SKEW_S, so an
# older one is dropped well before then (and after any pause, e.g. a test phase, rather than risk a stale packet).
PREPARED_MAX_AGE_S = 10.0


class Trainer:
    """Steps and predictions through one cascade; cover traffic is built while the forwards travel."""

    def __init__(self, inbox: Inbox, spec: ModelSpec, bound: TimeBound, *, microbatches: int = 1,
                 keep_loss: bool = False, loop_rate: int = 0, rng: random.Random | None = None) -> None:
        if microbatches < 1 or microbatches > spec.batch:
            raise VeilError(f"microbatches must be between 1 and the batch size {spec.batch}, got {microbatches}")
        self.inbox = inbox
        self.spec = spec
        self.bound = bound
        self.microbatches = microbatches
        self.keep_loss = keep_loss
        self.loop_rate = loop_rate
        self.rng = rng or random.Random()
        self.loop_hops: list[Hop] = []  # servers cover traffic may cross (the usable pool)
        self.steps = 0
        self.step_seconds = 0.0
        self._prepared: tuple[tuple[object, bytes], float, list[tuple[Route, list[Routing]]]] | None = None
        self.prepared_used = 0  # steps whose forward headers were built during the previous step

    def _forward_route(self, hops: list[Hop], layer_of: list[int | None], yj: torch.Tensor,
                       m: int) -> tuple[Route, list[Routing]]:
        """One micro-batch's forward header (fresh tags; the labels only in the loss layer's slot) and the
        routing of its backward, which reuses those tags in reverse order."""
        tags = [os.urandom(C.STEP_TAG_SIZE) for _ in hops]
        labels = bytes(yj.to(torch.uint8).tolist())
        fwd = [Routing(op=C.OP_FORWARD, tag=tags[k],
                       extra=labels if li is not None and self.spec.layers[li]["kind"] == "nll" else b"")
               for k, li in enumerate(layer_of)]
        return (self.inbox.route(hops, fwd),
                [Routing(op=C.OP_BACKWARD, tag=tags[k], frag=m) for k in range(len(hops))][::-1])

    def _prepare(self, cascade: Cascade, y: torch.Tensor) -> None:
        """Build the forward headers of a coming batch with labels ``y`` (used by the next ``step`` if it is on
        the same cascade with the same labels)."""
        hops, ys = cascade.hops, [c for c in torch.tensor_split(y, self.microbatches) if len(c)]
        key = (_cascade_key(cascade), bytes(y.to(torch.uint8).tolist()))
        routes = [self._forward_route(hops, cascade.layer_of, yj, len(ys)) for yj in ys]
        self._prepared = (key, time.monotonic(), routes)

    def _take_prepared(self, cascade: Cascade, y: torch.Tensor) -> list[tuple[Route, list[Routing]]]:
        """The prepared headers if they were made for this cascade and these labels; dropped either way."""
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared[0] != (_cascade_key(cascade), bytes(y.to(torch.uint8).tolist())):
            return []
        if time.monotonic() - prepared[1] > PREPARED_MAX_AGE_S:  # e.g. a long test phase came in between
            return []
        self.prepared_used += 1
        return prepared[2]

    def step(self, cascade: Cascade, x: torch.Tensor, y: torch.Tensor,
             upcoming: torch.Tensor | None = None) -> float:
        """Forward then backward of one batch in m micro-batches; returns the batch's mean loss. ``upcoming``:
        the next batch's labels, whose forward headers are then built while this step's backwards travel."""
        t_step = time.perf_counter()
        hops, layer_of = cascade.hops, cascade.layer_of
        xs = [c for c in torch.tensor_split(x, self.microbatches) if len(c)]
        ys = [c for c in torch.tensor_split(y, self.microbatches) if len(c)]
        m, total = len(xs), len(x)
        prepared = self._take_prepared(cascade, y)
        bwd_routes: list[list[Routing]] = []
        bound = self.bound.seconds()
        t0 = time.perf_counter()
        fwd_tags = {}
        for j in range(m):  # each forward leaves as soon as its header exists
            r, back = prepared[j] if prepared else self._forward_route(hops, layer_of, ys[j], m)
            bwd_routes.append(back)
            t = time.perf_counter()
            body = message.encode({}, {"x": xs[j]})
            self.inbox.timing["pack"] += time.perf_counter() - t
            fwd_tags[self.inbox.push(r, body, timeout=min(bound, C.SEND_TIMEOUT_S))] = j
        # while the forwards are in the cascade: every backward header, and this step's cover traffic
        routes_b = [self.inbox.route(hops[::-1], b) for b in bwd_routes]
        loops = self.inbox.build_loops(self.loop_hops, self.loop_rate, self.rng) if self.loop_rate else []
        losses = [0.0] * m
        bwd_tags: set[bytes] = set()

        def alive() -> bool:
            return answering(self.inbox, cascade)

        try:
            for _ in range(m):
                tag, reply = self.inbox.wait(fwd_tags, bound, "forward", alive)
                j = fwd_tags.pop(tag)
                out = _tensor(reply, "x")
                weight = len(xs[j]) / total
                t = time.perf_counter()
                if self.keep_loss:
                    logp = out.detach().requires_grad_(True)
                    loss = torch.nn.functional.nll_loss(logp, ys[j])
                    (loss * weight).backward()
                    grad, losses[j] = logp.grad, float(loss.detach())
                    assert grad is not None  # backward() through logp, a leaf that requires grad
                else:
                    grad, losses[j] = torch.full_like(out, weight), float(out)
                body = message.encode({}, {"g": grad})
                self.inbox.timing["pack"] += time.perf_counter() - t
                bwd_tags.add(self.inbox.push(routes_b[j], body, timeout=min(bound, C.SEND_TIMEOUT_S)))
            if upcoming is not None:  # the designer is idle until the backwards return: the next headers now
                self._prepare(cascade, upcoming)
            for _ in range(m):
                tag, _ = self.inbox.wait(bwd_tags, bound, "backward", alive)
                bwd_tags.discard(tag)
        finally:
            self.inbox.forget(list(fwd_tags) + list(bwd_tags))
        self.bound.max_rtt = max(self.bound.max_rtt, (time.perf_counter() - t0) / 2)
        self.inbox.send_loops(loops)
        self.steps += 1
        self.step_seconds += time.perf_counter() - t_step
        if m == 1:
            return losses[0]
        return float(sum(torch.tensor(losses, dtype=torch.float32) * torch.tensor([len(c) / total for c in xs])))

    def predict(self, cascade: Cascade, x: torch.Tensor) -> torch.Tensor:
        """Test-phase outputs (log-probabilities) for ``x``, in batches through the cascade (op 3)."""
        hops, outs = cascade.hops, []
        rows = -(-self.spec.batch // self.microbatches)  # micro-batch sized: every packet fits the run's class
        for i in range(0, len(x), rows):
            route = self.inbox.route(hops, [Routing(op=C.OP_TEST)] * len(hops))
            reply, _ = self.inbox.trip(route, message.encode({}, {"x": x[i : i + rows]}),
                                       self.bound.seconds(), confirm=lambda: answering(self.inbox, cascade))
            outs.append(_tensor(reply, "x"))
        return torch.cat(outs) if outs else torch.empty(0)

    def test(self, cascade: Cascade, x: torch.Tensor, y: torch.Tensor) -> float:
        """Held-out accuracy through the cascade: the designer's own metric."""
        return int((self.predict(cascade, x).argmax(1) == y).sum()) / len(x) if len(x) else 0.0

    def breakdown(self) -> dict[str, Any]:
        """Mean seconds per step: designer packing (headers, sealing, encoding) and waiting for the cascade."""
        n = max(self.steps, 1)
        return {"steps": self.steps, "step_s": self.step_seconds / n, "designer_pack_s": self.inbox.timing["pack"] / n,
                "designer_wait_s": self.inbox.timing["wait"] / n}


def _cascade_key(cascade: Cascade) -> object:
    """What a header depends on: every hop (address, public key, session secret) in order, and the layers."""
    return (tuple(cascade.hops), tuple(cascade.layer_of))


def _tensor(body: bytes, name: str) -> torch.Tensor:
    _, t = message.decode(body)
    if name not in t:
        raise VeilError(f"reply has no tensor {name!r}")
    return t[name]
