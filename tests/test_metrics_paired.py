"""``paired_difference``: two methods on the same probes (SYNTHETIC hit vectors with known answers)."""

from __future__ import annotations

import pytest
import torch

from veil.metrics import paired_difference


def test_counts_probes_won_and_lost_and_the_exact_mcnemar_p() -> None:
    a = torch.tensor([1, 1, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0], dtype=torch.bool)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    r = paired_difference(a, b, groups)
    assert (r["won"], r["lost"], r["n"]) == (3, 1, 8)
    assert r["difference"] == pytest.approx(2 / 8)
    assert r["p_mcnemar"] == pytest.approx(2 * (1 + 4) / 16)   # two-sided exact binomial, 3 vs 1 of 4
    assert r["ci95"][0] <= r["difference"] <= r["ci95"][1]


def test_identical_methods_differ_by_nothing() -> None:
    hits = torch.rand(200, generator=torch.Generator().manual_seed(0)) > 0.3
    r = paired_difference(hits, hits, torch.arange(200) // 4)
    assert r["difference"] == 0.0 and r["ci95"] == [0.0, 0.0] and r["p_mcnemar"] == 1.0


def test_a_consistent_winner_gets_an_interval_above_zero() -> None:
    b = torch.zeros(400, dtype=torch.bool)
    a = torch.arange(400) % 4 == 0            # a wins one probe in four, everywhere
    r = paired_difference(a, b, torch.arange(400) // 4)
    assert r["ci95"][0] > 0.15 and r["p_mcnemar"] < 1e-20
