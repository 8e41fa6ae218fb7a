"""Wilson intervals hold their own point estimate, including at 0 and n hits (found by the partition CLI test:
80 / 80 came out as rate 1.0 with an upper bound of 0.9999999999999999)."""

from __future__ import annotations

import math

from veil.metrics import Rate, wilson


def test_wilson_interval_contains_the_estimate_at_every_count() -> None:
    for n in range(1, 301):
        for hits in range(n + 1):
            lo, hi = wilson(hits, n)
            assert 0.0 <= lo <= hits / n <= hi <= 1.0, (hits, n, lo, hi)
    assert wilson(80, 80)[1] == 1.0 and wilson(0, 80)[0] == 0.0
    assert all(math.isnan(v) for v in wilson(0, 0))
    r = Rate(80, 80).as_dict()
    assert r["ci95"][0] <= r["rate"] <= r["ci95"][1]
