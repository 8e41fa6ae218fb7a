"""Piped output (a CI log, `veil demo > log`) must not cut tables at rich's 80-column guess."""

from __future__ import annotations

import os
import subprocess
import sys


def _width(env: dict[str, str]) -> int:
    code = "from veil.cli.common import console; print(console.width)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_piped_console_is_wide_enough_for_the_attack_table() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    assert _width(env) >= 160


def test_columns_still_wins_when_the_user_sets_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = "100"
    assert _width(env) == 100
