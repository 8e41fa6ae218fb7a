"""The untrusted side of a partition (accelerator, runner, attack) never imports the owner's key module."""

from __future__ import annotations

import pytest

from tests.test_trust_boundaries import closure

UNTRUSTED = ["veil.partition.runner", "veil.partition.split", "veil.partition.attack", "veil.partition.planner",
             "veil.partition.isolated", "veil.partition.tabular"]


@pytest.mark.parametrize("module", UNTRUSTED)
def test_no_key_module(module: str) -> None:
    assert "veil.keys" not in closure(module), f"{module} reaches veil.keys"
    assert "pickle" not in open(__import__(module, fromlist=["x"]).__file__).read()
