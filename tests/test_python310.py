"""Python 3.10 is the oldest Python pyproject promises, but the tests run on a newer one.

So a 3.11-only call (``int.from_bytes(data)`` without a byte order: ``TypeError`` on 3.10) passes every
test here. mypy at ``--python-version 3.10`` sees it: ``make check`` (run by .ci/run) checks all of src/veil
that way; these tests show the check catches that class of bug and keep the module that had it clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")  # a dev dependency (pyproject's dev extras)

ROOT = Path(__file__).resolve().parents[1]


def _mypy_310(path: Path) -> tuple[str, int]:
    """mypy at Python 3.10 on one file, its imports not followed (a second or so, no cache written)."""
    out, err, rc = api.run(["--python-version", "3.10", "--follow-imports", "skip", "--ignore-missing-imports",
                            "--cache-dir", "/dev/null", "--no-error-summary", str(path)])
    return out + err, rc


def test_checker_at_310_flags_a_311_only_call(tmp_path: Path) -> None:
    """SYNTHETIC snippet: the bug designer.py had, then the same line with a byte order."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text("import os\n\nseed = int.from_bytes(os.urandom(8))\n")
    out, rc = _mypy_310(snippet)
    assert rc == 1 and 'Missing positional argument "byteorder"' in out
    snippet.write_text('import os\n\nseed = int.from_bytes(os.urandom(8), "big")\n')
    out, rc = _mypy_310(snippet)
    assert rc == 0, out


def test_designer_runs_on_310() -> None:
    """A Designer without ``select_seed`` draws its seed with int.from_bytes: it needs a byte order on 3.10."""
    out, rc = _mypy_310(ROOT / "src" / "veil" / "cascade" / "designer.py")
    assert "byteorder" not in out and "call-arg" not in out, out
