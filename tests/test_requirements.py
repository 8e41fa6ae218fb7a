"""CI's VEIL_REQUIRE_DATA=1 turns a missing-data skip into a failure (``tests/conftest.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import needs_data, pytest_runtest_setup


def test_missing_data_is_a_skip_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("VEIL_REQUIRE_DATA", raising=False)
    mark = needs_data(tmp_path / "absent", "some data").mark
    assert mark.name == "skipif" and mark.args == (True,) and "some data not found" in mark.kwargs["reason"]
    assert needs_data(tmp_path, "some data").mark.args == (False,)


def test_missing_data_fails_when_required(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_REQUIRE_DATA", "1")
    assert needs_data(tmp_path, "present data").mark.name == "skipif"  # present: nothing to fail
    mark = needs_data(tmp_path / "absent", "some data").mark
    assert mark.name == "veil_required_missing"
    item = SimpleNamespace(get_closest_marker=lambda name: mark if name == mark.name else None)
    with pytest.raises(pytest.fail.Exception, match="VEIL_REQUIRE_DATA=1 but some data not found"):
        pytest_runtest_setup(item)
    pytest_runtest_setup(SimpleNamespace(get_closest_marker=lambda name: None))  # unmarked tests run
