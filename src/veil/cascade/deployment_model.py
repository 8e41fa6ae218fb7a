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
ratio divides by the local epoch (also measured alone on one core).

Cold hops (``project_cold``). A hop's cost depends on what its core did just before. Measured back to back (the
same operation in a hot loop) one forward of the first layer took 0.33 ms on this machine; measured after 2 ms of
sleep 0.53 ms, after 15 ms 1.09 ms (one scratch run; the core's caches and state are refilled by whatever ran
while it waited, and the cascade's parties idle for most of a step, waiting for the other hops). Hot costs
under-predicted the quiet loopback runs by half. So costs are measured at several idle gaps before each operation
(``CostsByGap``), and the step is the fixed point of: step time -> the idle each party's packets see (a burst's
first packet: the rest of the step; the others: one pipeline stage) -> costs at those gaps -> step time. The
model still ignores what it cannot measure in isolation (scheduler wake-up latency beyond fair sharing), so its
error against measured runs is the test of whether that matters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from veil.errors import VeilError


@dataclass(frozen=True)
class Link:
    """A link profile: one-way delay (s), rate (bit/s; ``math.inf`` for loopback, a memory copy) and the burst a
    token-bucket shaper lets through at line speed (bytes; 0 for a real link, whose wire runs at its rate)."""

    name: str
    delay_s: float = 0.0
    rate_bps: float = math.inf
    burst_bytes: int = 0

    def wire_s(self, packet_bytes: int) -> float:
        """Serialisation time of one packet at the rate (TCP/IP framing adds ~3% at a 1,500-byte MTU), after an
        idle link: a token bucket (the emulation's ``tbf``) refills while the link idles and passes its burst at
        once, so only the rest waits for the rate. (Packets of one step are spaced by the hops' work, milliseconds
        on these links, long enough to refill the emulated buckets: 125 KB at 1 Gbit/s in 1 ms.)"""
        if math.isinf(self.rate_bps):
            return 0.0
        return max(0, packet_bytes - self.burst_bytes) * 8 * 1.03 / self.rate_bps


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
    ``cores`` shared fairly: ``(other + 1) / cores = slowdown``. A process at full speed (``slowdown`` up to
    ``FULL_SPEED``, the local epoch's own spread on a quiet machine) cannot tell 0 other processes from
    ``cores - 1``; the quiet reading, 0, is taken (the formula's ``cores - 1`` there stretched every quiet run's
    CPU terms that were measured beside nothing)."""
    return 0.0 if slowdown <= FULL_SPEED else max(0.0, slowdown * cores - 1.0)


# a local baseline within 50% of the machine's usual epoch ran at full speed: on a quiet machine (load 0.3-2.6,
# nothing else running) its median of 10 epochs beside a run ranged 0.72-1.68x the bench's median (session 7);
# under other engineers' load it ran 3.6-5.8x (session 6)
FULL_SPEED = 1.5


def error(predicted: float, measured: float) -> float:
    """Relative error of a prediction (the model is judged within 20% of every measured run)."""
    return (predicted - measured) / measured


_SCALAR = ("crypto_s", "designer_headers_s", "designer_send_s", "designer_turn_s", "designer_final_s")


@dataclass(frozen=True)
class CostsByGap:
    """Hop costs measured after several idle gaps (seconds of sleep before each timed operation), ascending.

    ``at(gap)`` interpolates every CPU cost linearly between the measured gaps and holds the end values beyond
    them (the cold penalty saturates once the caches are gone); the link and local terms come from the first."""

    points: tuple[tuple[float, HopCosts], ...]

    def __post_init__(self) -> None:
        gaps = [g for g, _ in self.points]
        if not gaps or gaps != sorted(gaps) or len(set(gaps)) != len(gaps) or gaps[0] < 0:
            raise VeilError("costs by gap need distinct, ascending, non-negative gaps")
        if len({c.servers for _, c in self.points}) != 1:
            raise VeilError("every gap's costs must cover the same cascade")

    def at(self, gap_s: float) -> HopCosts:
        pts = self.points
        if gap_s <= pts[0][0] or len(pts) == 1:
            return pts[0][1]
        if gap_s >= pts[-1][0]:
            lo = hi = pts[-1]
            w = 0.0
        else:
            i = next(k for k in range(1, len(pts)) if pts[k][0] >= gap_s)
            lo, hi = pts[i - 1], pts[i]
            w = (gap_s - lo[0]) / (hi[0] - lo[0])
        a, b = lo[1], hi[1]

        def mix(x: float, y: float) -> float:
            return (1 - w) * x + w * y

        first = pts[0][1]
        return HopCosts(rows=first.rows, packet_bytes=first.packet_bytes,
                        node_forward_s=[mix(x, y) for x, y in zip(a.node_forward_s, b.node_forward_s, strict=True)],
                        node_backward_s=[mix(x, y) for x, y in zip(a.node_backward_s, b.node_backward_s, strict=True)],
                        transfer_fixed_s=first.transfer_fixed_s, local_step_s=first.local_step_s,
                        **{k: mix(getattr(a, k), getattr(b, k)) for k in _SCALAR})


def _cold_step(costs: CostsByGap, gaps: tuple[float, float], link: Link, m: int, steps_per_epoch: int,
               cores: float | None, local_epoch_s: float | None, other_load: float,
               prepared_headers: bool) -> tuple[Projection, tuple[float, float]]:
    """One evaluation of the cold model at (gap before a burst's first packet, gap between a burst's packets):
    the step, and the gaps that step would leave."""
    g_out, g_in = gaps
    c_out, c_in = costs.at(g_out), costs.at(g_in)
    p_out = project(c_out, link, m, steps_per_epoch, cores, local_epoch_s, other_load, prepared_headers)
    p_in = project(c_in, link, m, steps_per_epoch, cores, local_epoch_s, other_load, prepared_headers)
    f, busy = p_out.terms["cpu_stretch"], p_out.terms["runnable_at_once"]
    pipeline = p_out.round_s + (m - 1) * p_in.stage_s  # the first micro-batch cold, the others one stage apart
    work = (p_out.work_s + (m - 1) * p_in.work_s) / m
    cpu = work / busy if cores is not None else 0.0
    step = p_out.terms["headers_s"] + max(pipeline, cpu)
    # each party's time per packet (forward and backward averaged), then the gaps its packets see: one stage
    # apart inside a burst, and what is left of the step before each of its two bursts (the first packet of a
    # burst at the cold cost, the others at the in-burst one)
    def per_packet(c: HopCosts) -> list[float]:
        nodes = [f * ((fw + bw) / 2 + c.crypto_s) for fw, bw in zip(c.node_forward_s, c.node_backward_s, strict=True)]
        return nodes + [f * (c.designer_send_s + c.designer_turn_s + c.designer_final_s + 2 * c.designer_headers_s) / 2]

    warm, cold = per_packet(c_in), per_packet(c_out)
    inside = [max(0.0, p_in.stage_s - o) if m > 1 else 0.0 for o in warm]
    before = [max(0.0, step - 2 * (o_c + (m - 1) * o_w) - (2 * m - 2) * g) / 2
              for o_c, o_w, g in zip(cold, warm, inside, strict=True)]
    local_epoch = p_out.local_epoch_s
    p = Projection(link=link.name, servers=p_out.servers, microbatches=m, cores=p_out.cores, round_s=p_out.round_s,
                   stage_s=p_in.stage_s, work_s=work, step_s=step, epoch_s=step * steps_per_epoch,
                   local_epoch_s=local_epoch, ratio=step * steps_per_epoch / local_epoch,
                   bound="cpu" if cpu > pipeline else "pipeline", terms=dict(p_out.terms))
    return p, (sum(before) / len(before), sum(inside) / len(inside))


def project_cold(costs: CostsByGap, link: Link, microbatches: int, steps_per_epoch: int, cores: float | None = None,
                 local_epoch_s: float | None = None, other_load: float = 0.0,
                 prepared_headers: bool = True, iterations: int = 200) -> Projection:
    """``project`` with each hop's cost taken at the idle it has in the step itself. A party's 2m packets of a
    step come in two bursts (m forwards, m backwards): the first of each after the rest of the step has passed
    elsewhere (``gap_before_burst_s``), the others one pipeline stage apart (``gap_in_burst_s``). The round (the
    first micro-batch's trip) is costed at the first gap, each further stage at the second; the gaps are the
    fixed point of step -> gaps -> costs -> step, found by damped iteration from hot (0, 0)."""
    args = (link, microbatches, steps_per_epoch, cores, local_epoch_s, other_load, prepared_headers)
    gaps = (0.0, 0.0)
    p, new = _cold_step(costs, gaps, *args)
    moved = math.inf
    for _ in range(iterations):
        gaps = ((gaps[0] + new[0]) / 2, (gaps[1] + new[1]) / 2)
        p, new = _cold_step(costs, gaps, *args)
        moved = max(abs(new[0] - gaps[0]), abs(new[1] - gaps[1]))
        if moved < 1e-6:
            break
    p.terms.update(gap_before_burst_s=gaps[0], gap_in_burst_s=gaps[1], gap_residual_s=moved)
    return p
