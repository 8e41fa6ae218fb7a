"""Cost model arithmetic, FLOP counting, and the planner's choice on a tiny SYNTHETIC case."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veil.errors import VeilError
from veil.partition import SGXCostModel, measure_part, plan
from veil.partition.cost_model import MIB
from veil.partition.models import ModelSpec
from veil.partition.planner import choose


def test_flops_come_from_flop_counter() -> None:
    lin = nn.Linear(10, 20)
    cost = measure_part(nn.Sequential(lin), torch.randn(4, 10), repeats=1)
    assert cost.flops == 2 * 4 * 10 * 20
    assert cost.params == 10 * 20 + 20


def test_epc_overflow_adds_modelled_paging() -> None:
    cm = SGXCostModel(epc_mib=1.0, page_swap_cycles=40_000, cpu_ghz=2.0)
    fits = cm.modelled_seconds(0.01, weight_bytes=MIB // 2, activation_bytes=0)
    spills = cm.modelled_seconds(0.01, weight_bytes=2 * MIB, activation_bytes=0)
    assert fits["fits_epc"] and fits["modelled_paging_s"] == 0
    assert not spills["fits_epc"]
    assert spills["modelled_swapped_pages"] == 2 * 256  # 1 MiB overflow = 256 pages, evicted and loaded
    assert spills["modelled_paging_s"] == pytest.approx(512 * 40_000 / 2e9)
    lru = SGXCostModel(epc_mib=1.0, paging="lru").modelled_seconds(0.01, 2 * MIB, 0)
    assert lru["modelled_swapped_pages"] == 2 * 512


def _tiny() -> nn.Module:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return Tiny().eval()


def test_planner_picks_least_enclave_work_under_the_bound() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)  # SYNTHETIC
    spec = ModelSpec("tiny", 3, image_size=16)
    result = plan(_tiny(), spec, images[:40], images[40:], max_ssim=1.0, epochs=1, attacks=("regression",))
    assert [s.point.label for s in result.splits] == ["block1", "block2", "block3"]
    flops = [s.enclave_cost["flops"] for s in result.splits]
    assert flops == sorted(flops) and flops[0] > 0
    assert result.choice is result.splits[0]  # everything passes a bound of 1.0: the cheapest wins
    assert choose(result.splits, -1.0) is None  # nothing passes
    for s in result.splits:  # a bound exactly at one split's SSIM admits it and everything below it
        bound = s.worst_ssim
        admitted = [r for r in result.splits if r.worst_ssim <= bound]
        want = min(admitted, key=lambda r: r.enclave_cost["flops"])
        assert choose(result.splits, bound) is want
    body = result.as_dict()
    assert body["choice"]["label"] == "block1" and 0 < body["splits"][0]["enclave_flop_share"] < 1
    assert body["prior_baseline"]["n"] == 8 and -1 <= body["prior_baseline"]["ssim_mean"] <= 1


def test_planner_rejects_bad_bound() -> None:
    with pytest.raises(VeilError, match="max-ssim"):
        plan(_tiny(), ModelSpec("tiny", 3, image_size=16), torch.zeros(40, 3, 16, 16, dtype=torch.uint8),
             torch.zeros(4, 3, 16, 16, dtype=torch.uint8), max_ssim=1.5)


def test_bound_relative_to_the_no_feature_prior() -> None:
    """--over-prior: bound = SSIM of the adversary's mean image + margin, recorded in the plan."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)  # SYNTHETIC
    result = plan(_tiny(), ModelSpec("tiny", 3, image_size=16), images[:40], images[40:], epochs=1,
                  attacks=("regression",), splits=["block1"], over_prior=0.05)
    body = result.as_dict()
    assert body["max_ssim"] == pytest.approx(body["prior_baseline"]["ssim_mean"] + 0.05)
    assert body["bound"] == "prior_baseline.ssim_mean + over_prior" and body["over_prior"] == 0.05
    with pytest.raises(VeilError, match="over-prior"):
        plan(_tiny(), ModelSpec("tiny", 3, image_size=16), images[:40], images[40:], over_prior=-0.1)
