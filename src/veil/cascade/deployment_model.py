"""A deployment model of the cascade's epoch time: per-hop costs measured in isolation, composed along the critical
path of one training step with GPipe-style micro-batches, for N servers on their own machines (or sharing cores).

Why a model: a single loopback ratio on a shared 2-core machine measures CPU contention as much as the cascade, and
says nothing about one server per machine across real links. The model takes what one hop costs (measured alone on
one core: peel + reseal, decode + layer + encode forward and backward, the designer's packing) and what one link
costs (a fixed per-message transport cost, the packet's serialisation at the link's rate, the one-way delay), and
composes them the way ``trainer.Trainer.step`` runs a step:

- one micro-batch's round: the designer builds and seals the forward; every node peels, computes and reseals it, each
  link carries it; the designer turns the loss into a gradient; the same back through every node; the designer peels
  the last reply. That is ``round_s``.
- m micro-batches enter at once, so after the first round the others follow one bottleneck stage-time apart
  (``stage_s``: the busiest node's forward + backward work per micro-batch, the designer's, or a link's busy time
  for the two packets each host sends per micro-batch), the classic pipeline bound ``round + (m - 1) * stage``.
- on ``cores`` CPUs shared by all parties (and by other work, ``other_load`` runnable processes), each of the k
  cascade processes runnable at once gets ``cores / (other_load + k)`` of a core (fair sharing), which stretches
  every CPU term, and a step can be no shorter than its CPU work spread over those k processes. With a core per
  party (the deployed set-up) neither applies.

``step_s = headers + max(round + (m - 1) * stage, work / k)``, where ``headers`` is 0 because the trainer builds a
step's forward headers during the previous step (``prepared_headers=False``: m headers before the first send, as
before that change), and an epoch is ``steps_per_epoch * step_s``; the
ratio divides by the local epoch (also measured alone on one core). The model ignores what it cannot measure in
isolation (scheduler wake-up latency beyond fair sharing, cache effects between processes), so its error against
measured runs is the test of whether those matter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from veil.errors import VeilError


@dataclass(frozen=True)
class Link:
    """A link profile: one-way delay (s) and rate (bit/s; ``math.inf`` for loopback, a memory copy)."""

    name: str
    delay_s: float = 0.0
    rate_bps: float = math.inf

    def wire_s(self, packet_bytes: int) -> float:
        """Serialisation time of one packet at the rate (TCP/IP framing adds ~3% at a 1,500-byte MTU)."""
        return 0.0 if math.isinf(self.rate_bps) else packet_bytes * 8 * 1.03 / self.rate_bps


@dataclass(frozen=True)
class HopCosts:
    """Seconds, measured alone on one core, for one micro-batch of ``rows`` rows in the run's cell."""

    rows: int
    packet_bytes: int
    crypto_s: float  # one hop's peel + reseal (session mode) at the cell
    node_forward_s: list[float]  # per cascade position: decode + layer forward + encode
    node_backward_s: list[float]  # per cascade position: decode + layer backward (+ optimiser step) + encode
    designer_headers_s: float  # building one route's header (n + 1 slots), per micro-batch and direction
    designer_send_s: float  # encode the input + seal the first payload
    designer_turn_s: float  # peel the loss, make the gradient, encode, seal the backward
    designer_final_s: float  # peel the last backward reply
    transfer_fixed_s: float  # one message between two processes, minus the wire: transport + wake-up
    local_step_s: float  # the same batch trained locally (all layers, no cascade)

    @property
    def servers(self) -> int:
        return len(self.node_forward_s)


@dataclass
class Projection:
    """The model's answer for one set-up, with the terms it added up."""

    link: str
    servers: int
    microbatches: int
    cores: float
    round_s: float
    stage_s: float
    work_s: float
    step_s: float
    epoch_s: float
    local_epoch_s: float
    ratio: float
    bound: str  # "pipeline" or "cpu": which term set the step time
    terms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(costs: HopCosts, link: Link, microbatches: int, steps_per_epoch: int, cores: float | None = None,
            local_epoch_s: float | None = None, other_load: float = 0.0, prepared_headers: bool = True) -> Projection:
    """The projected step and epoch time, and the ratio to local training, for ``costs`` at ``link``.

    ``cores``: CPUs the designer and the N servers share (None: one each, the deployed set-up). ``costs`` must be
    measured at ``microbatches``' rows (the cell and the bodies shrink with m), on an otherwise idle core.
    ``other_load``: runnable processes of *other* work on those cores (a shared machine). With k of the cascade's
    processes runnable at once (k = min(m, N + 1): one per micro-batch in flight), the scheduler shares the cores
    fairly, so each runs at ``cores / (other_load + k)`` of a core when that is below 1: every CPU term stretches by
    that factor (the wire and the delay do not), and the step cannot beat its CPU work spread over the k processes.
    """
    m, n = microbatches, costs.servers
    if m < 1 or n < 1 or steps_per_epoch < 1 or (cores is not None and cores <= 0) or other_load < 0:
        raise VeilError("microbatches, servers, steps per epoch and cores must be positive, other load >= 0")
    if len(costs.node_backward_s) != n:
        raise VeilError("one forward and one backward cost per cascade position")
    busy = min(m, n + 1)  # the cascade's processes runnable at once
    f = max(1.0, (other_load + busy) / cores) if cores is not None else 1.0
    wire = link.wire_s(costs.packet_bytes)
    link_s = f * costs.transfer_fixed_s + wire + link.delay_s
    links = 2 * (n + 1)
    nodes_f = f * (sum(costs.node_forward_s) + n * costs.crypto_s)
    nodes_b = f * (sum(costs.node_backward_s) + n * costs.crypto_s)
    designer = f * (costs.designer_send_s + costs.designer_turn_s + costs.designer_final_s)
    round_s = designer + nodes_f + nodes_b + links * link_s
    stage_s = max([f * (fw + bw + 2 * costs.crypto_s) for fw, bw in zip(costs.node_forward_s, costs.node_backward_s,
                                                                       strict=True)]
                  + [designer + f * costs.designer_headers_s, 2 * wire])
    # the forward routes: built during the previous step's backward trip (``Trainer`` prepares them), so off the
    # critical path; without that (``prepared_headers=False``: the first step, or the trainer before it prepared
    # them) all m were built before the first packet left
    headers = 0.0 if prepared_headers else m * f * costs.designer_headers_s
    # every CPU second of the step (transfers included: kernel copies and wake-ups), at the shared speed
    work_s = m * (designer + nodes_f + nodes_b + f * (2 * costs.designer_headers_s + links * costs.transfer_fixed_s))
    pipeline = round_s + (m - 1) * stage_s
    cpu = work_s / busy if cores is not None else 0.0
    step_s = headers + max(pipeline, cpu)
    local_epoch = local_epoch_s if local_epoch_s is not None else costs.local_step_s * steps_per_epoch
    epoch_s = step_s * steps_per_epoch
    return Projection(link=link.name, servers=n, microbatches=m, cores=cores if cores is not None else n + 1,
                      round_s=round_s, stage_s=stage_s, work_s=work_s, step_s=step_s, epoch_s=epoch_s,
                      local_epoch_s=local_epoch, ratio=epoch_s / local_epoch,
                      bound="cpu" if cpu > pipeline else "pipeline",
                      terms={"link_one_way_s": link_s, "links_per_round": links, "nodes_forward_s": nodes_f,
                             "nodes_backward_s": nodes_b, "designer_s": designer, "headers_s": headers,
                             "cpu_stretch": f, "runnable_at_once": busy})


def other_load_from(slowdown: float, cores: float) -> float:
    """Runnable processes of other work implied by one process running ``slowdown`` times slower than alone on
    ``cores`` shared fairly: ``(other + 1) / cores = slowdown`` (0 when it ran at full speed)."""
    return max(0.0, slowdown * cores - 1.0)


def error(predicted: float, measured: float) -> float:
    """Relative error of a prediction (the model is judged within 20% of every measured run)."""
    return (predicted - measured) / measured
