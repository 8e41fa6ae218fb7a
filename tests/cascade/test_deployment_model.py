"""The deployment model's composition on SYNTHETIC costs: one micro-batch's round is the sum along the critical
path, micro-batches add one bottleneck stage each, shared cores bound a step by its CPU work, links add their
serialisation and delay; with costs measured after idle gaps, each hop is costed at the idle the step leaves it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from veil.cascade.deployment_model import CostsByGap, HopCosts, Link, error, other_load_from, project, project_cold
from veil.errors import VeilError

MS = 1e-3


def costs(n: int = 3, fwd: float = 1 * MS, bwd: float = 2 * MS, packet: int = 125_000) -> HopCosts:
    return HopCosts(rows=64, packet_bytes=packet, crypto_s=0.1 * MS, node_forward_s=[fwd] * n,
                    node_backward_s=[bwd] * n, designer_headers_s=0.2 * MS, designer_send_s=0.3 * MS,
                    designer_turn_s=0.4 * MS, designer_final_s=0.05 * MS, transfer_fixed_s=0.1 * MS,
                    local_step_s=1 * MS)


def test_one_microbatch_is_the_critical_path_sum() -> None:
    c = costs()
    p = project(c, Link("loopback"), 1, steps_per_epoch=10)
    nodes = 3 * (1 + 2) * MS + 2 * 3 * 0.1 * MS
    designer = (0.3 + 0.4 + 0.05) * MS
    links = 2 * 4 * 0.1 * MS
    assert p.round_s == pytest.approx(nodes + designer + links)
    assert p.step_s == pytest.approx(p.round_s)  # the headers were built during the previous step
    cold = project(c, Link("loopback"), 1, steps_per_epoch=10, prepared_headers=False)
    assert cold.step_s == pytest.approx(0.2 * MS + p.round_s)
    assert p.epoch_s == pytest.approx(10 * p.step_s)
    assert p.ratio == pytest.approx(p.epoch_s / (10 * MS)) and p.bound == "pipeline"


def test_links_add_serialisation_and_delay_per_crossing() -> None:
    c = costs()
    near = project(c, Link("loopback"), 1, 10)
    far = project(c, Link("wan", delay_s=10 * MS, rate_bps=100e6), 1, 10)
    wire = 125_000 * 8 * 1.03 / 100e6
    assert far.round_s - near.round_s == pytest.approx(8 * (wire + 10 * MS))
    assert Link("x").wire_s(10**9) == 0.0 and math.isinf(Link("x").rate_bps)
    shaped = Link("tbf", rate_bps=1e9, burst_bytes=125_000)  # a token bucket passes its burst at once
    assert shaped.wire_s(267_208) == pytest.approx((267_208 - 125_000) * 8 * 1.03 / 1e9)
    assert shaped.wire_s(100_000) == 0.0


def test_each_extra_microbatch_adds_one_bottleneck_stage() -> None:
    c = costs()
    one, four = project(c, Link("loopback"), 1, 10), project(c, Link("loopback"), 4, 10)
    stage = 1 * MS + 2 * MS + 2 * 0.1 * MS  # the busiest node: forward + backward + two hops' crypto
    assert four.stage_s == pytest.approx(stage)
    assert four.step_s == pytest.approx(one.round_s + 3 * stage)
    cold = project(c, Link("loopback"), 4, 10, prepared_headers=False)  # all m headers before the first send
    assert cold.step_s == pytest.approx(4 * 0.2 * MS + one.round_s + 3 * stage)


def test_shared_cores_bound_a_step_by_its_work() -> None:
    c = costs(n=6)
    own = project(c, Link("loopback"), 8, 10)  # one core per party
    shared = project(c, Link("loopback"), 8, 10, cores=1)
    assert shared.terms["runnable_at_once"] == 7 and shared.terms["cpu_stretch"] == 7  # 7 processes, 1 core
    pipeline = shared.round_s + 7 * shared.stage_s
    assert shared.step_s == pytest.approx(max(pipeline, shared.work_s / 7))
    assert shared.step_s > 6 * own.step_s
    assert shared.bound == ("cpu" if shared.work_s / 7 > pipeline else "pipeline")


def test_bad_inputs_are_refused_and_error_is_relative() -> None:
    with pytest.raises(VeilError):
        project(costs(), Link("x"), 0, 10)
    with pytest.raises(VeilError):
        project(costs(), Link("x"), 1, 10, cores=0)
    with pytest.raises(VeilError):
        project(costs(), Link("x"), 1, 10, other_load=-1)
    assert error(1.2, 1.0) == pytest.approx(0.2) and error(0.9, 1.0) == pytest.approx(-0.1)


def test_other_load_stretches_cpu_terms_but_not_the_wire_or_the_delay() -> None:
    c = costs()
    link = Link("wan", delay_s=10 * MS, rate_bps=100e6)
    base = project(c, link, 1, 10, cores=2)
    slow = project(c, link, 1, 10, cores=2, other_load=3.0)  # (3 + 1) / 2: each CPU term twice as long
    cpu = base.round_s - 8 * (link.wire_s(c.packet_bytes) + link.delay_s)
    assert base.terms["cpu_stretch"] == 1.0 and slow.terms["cpu_stretch"] == 2.0
    assert slow.round_s - base.round_s == pytest.approx(cpu)
    assert slow.step_s - base.step_s == pytest.approx(cpu)
    assert other_load_from(2.0, 2) == 3.0 and other_load_from(1.6, 2) == pytest.approx(2.2)
    # at full speed (within the local epoch's own spread) one process cannot tell 0 other processes from
    # cores - 1: the quiet reading is taken
    assert other_load_from(1.4, 2) == 0.0 and other_load_from(0.8, 2) == 0.0 and other_load_from(0.4, 2) == 0.0


def scaled(c: HopCosts, k: float) -> HopCosts:
    """``c`` with every CPU cost times ``k`` (a cold hop: same work, slower after idle)."""
    return dataclasses.replace(c, crypto_s=k * c.crypto_s, node_forward_s=[k * v for v in c.node_forward_s],
                               node_backward_s=[k * v for v in c.node_backward_s],
                               designer_headers_s=k * c.designer_headers_s, designer_send_s=k * c.designer_send_s,
                               designer_turn_s=k * c.designer_turn_s, designer_final_s=k * c.designer_final_s)


def test_costs_by_gap_interpolate_between_gaps_and_hold_beyond_them() -> None:
    c = costs()
    by_gap = CostsByGap(((0.0, c), (10 * MS, scaled(c, 3.0))))
    assert by_gap.at(0.0) == c and by_gap.at(-1.0) == c
    mid = by_gap.at(5 * MS)
    assert mid.node_forward_s == pytest.approx([2 * MS] * 3) and mid.crypto_s == pytest.approx(0.2 * MS)
    assert mid.transfer_fixed_s == c.transfer_fixed_s and mid.local_step_s == c.local_step_s  # not CPU-after-idle
    assert by_gap.at(1.0).node_backward_s == pytest.approx([6 * MS] * 3)  # saturated: held at the last gap
    with pytest.raises(VeilError):
        CostsByGap(((5 * MS, c), (0.0, c)))
    with pytest.raises(VeilError):
        CostsByGap(((0.0, c), (0.0, c)))
    with pytest.raises(VeilError):
        CostsByGap(((0.0, c), (1 * MS, costs(n=4))))


def test_hot_costs_alone_give_the_plain_model() -> None:
    c = costs(n=6)
    for m, cores in ((1, None), (4, None), (8, 2)):
        plain = project(c, Link("dc", 0.25 * MS, 1e9), m, 10, cores)
        cold = project_cold(CostsByGap(((0.0, c),)), Link("dc", 0.25 * MS, 1e9), m, 10, cores)
        assert cold.step_s == pytest.approx(plain.step_s) and cold.bound == plain.bound


def test_each_hop_is_costed_at_the_idle_its_step_leaves_it() -> None:
    c = costs()
    by_gap = CostsByGap(((0.0, c), (50 * MS, scaled(c, 3.0))))
    link = Link("far", delay_s=1 * MS)
    p = project_cold(by_gap, link, 1, 10)
    g = p.terms["gap_before_burst_s"]
    assert p.terms["gap_residual_s"] < 1e-6 and 0 < g < 50 * MS
    at = by_gap.at(g)
    again = project(at, link, 1, 10)
    assert p.step_s == pytest.approx(again.step_s)  # the step is the one its own gap's costs give
    busy = [fw + bw + 2 * at.crypto_s for fw, bw in zip(at.node_forward_s, at.node_backward_s, strict=True)]
    busy.append(at.designer_send_s + at.designer_turn_s + at.designer_final_s + 2 * at.designer_headers_s)
    assert g == pytest.approx(sum(p.step_s - b for b in busy) / len(busy) / 2, rel=1e-4)  # its own idle per packet
    hot, cold = project(c, link, 1, 10), project(scaled(c, 3.0), link, 1, 10)
    assert hot.step_s < p.step_s < cold.step_s
    # a longer link leaves more idle, so colder hops: the CPU part of the step grows with the delay
    far = project_cold(by_gap, Link("farther", delay_s=20 * MS), 1, 10)
    assert far.terms["gap_before_burst_s"] > g
    assert far.step_s - 8 * 20 * MS > p.step_s - 8 * 1 * MS


def test_microbatches_inside_a_burst_wait_one_stage_apart() -> None:
    c = costs()
    by_gap = CostsByGap(((0.0, c), (20 * MS, scaled(c, 3.0))))
    p = project_cold(by_gap, Link("far", delay_s=5 * MS), 4, 10)
    assert p.terms["gap_residual_s"] < 1e-6
    assert p.terms["gap_in_burst_s"] < p.terms["gap_before_burst_s"]  # a stage apart is less than the rest of a step
