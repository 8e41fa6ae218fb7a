"""``veil serve``'s options reach the ServerConfig fields of their names (mypy found them passed by position into
the wrong fields: --body-timeout had become the per-address connection cap)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from veil.cli.app import app


def test_every_limit_option_lands_in_its_own_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import veil.serve.app as server

    seen = []
    monkeypatch.setattr(server, "run_server", seen.append)
    options = {"--max-connections": 11, "--header-timeout": 12.5, "--body-timeout": 13.5, "--idle-timeout": 14,
               "--max-connections-per-address": 15, "--handshake-timeout": 16.5, "--auth-failures-burst": 17,
               "--auth-failures-per-second": 18.5}
    args = ["serve", "--recnet", str(tmp_path / "recnet.safetensors")]
    for name, value in options.items():
        args += [name, str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    for name, value in options.items():
        assert getattr(cfg, name[2:].replace("-", "_")) == value, name
