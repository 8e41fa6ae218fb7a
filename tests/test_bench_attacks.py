"""bench/attacks.py: its attacker RecNets use the owner's whole recorded recipe, and its table reads the one
attack-result format (the committed bench/results/attacks.json, REAL figures; recipes are SYNTHETIC configs)."""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from veil.attacks.params import AttackParameterError
from veil.attacks.recnet_fit import owner_recipe
from veil.evaluation.leakage_harness import LeakageHarness
from veil.presets import STRONG_EXTNET_CLOUD

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench_attacks(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    return importlib.import_module("attacks")


def fake_harness(recorded: dict | None) -> LeakageHarness:
    """A harness of a run whose results.json holds only the recipe (no run directory is opened)."""
    h = LeakageHarness.__new__(LeakageHarness)
    h.run, h.results = Path("RUN"), {"config": {"cloud": recorded}} if recorded is not None else {}
    return h


def test_the_owner_recipe_is_taken_whole():
    recorded = asdict(STRONG_EXTNET_CLOUD)
    assert recorded["head_init"] == "centroids" and recorded["lr"] == 0.01  # what a hand-written copy missed
    cfg = owner_recipe(recorded, epochs=7, seed=3)
    assert {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "seed")} == {
        k: v for k, v in recorded.items() if k not in ("epochs", "seed")}
    assert (cfg.epochs, cfg.seed) == (7, 3) and owner_recipe(recorded).epochs == recorded["epochs"]
    with pytest.raises(AttackParameterError, match="does not know: sharpness"):
        owner_recipe({**recorded, "sharpness": 2})


def test_bench_attacks_trains_its_attackers_with_the_runs_recipe(bench_attacks):
    recorded = asdict(STRONG_EXTNET_CLOUD)
    cfg = bench_attacks.attacker_recipe(fake_harness(recorded), "strong", None, 0)
    assert (cfg.head_init, cfg.lr, cfg.depth, cfg.init, cfg.epochs) == ("centroids", 0.01, 0, "identity", 5)
    assert bench_attacks.attacker_recipe(fake_harness(recorded), "strong", 2, 0).epochs == 2
    assert bench_attacks.attacker_recipe(fake_harness(recorded), "transformer", None, 0).depth == 2
    from veil.errors import VeilError

    with pytest.raises(VeilError, match="records no cloud recipe"):
        bench_attacks.attacker_recipe(fake_harness(None), "strong", None, 0)


def test_bench_attacks_table_reads_the_committed_results_through_the_one_format(bench_attacks):
    payload = json.loads((REPO / "bench" / "results" / "attacks.json").read_text())
    table = bench_attacks.markdown_table(payload["figures"]["results"].values())
    committed = (REPO / "bench" / "results" / "attacks.md").read_text()
    assert committed.endswith("\n\n" + table)
    assert bench_attacks.pct is importlib.import_module("_common").pct  # one copy of the rate format
