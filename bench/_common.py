"""What every bench script shares: the result envelope (:mod:`veil.bench`) and one atomic writer.

Every ``bench/results/*.json`` carries the same top-level fields (``benchmark``, ``command``, ``device``,
``environment``, ``seed``, ``wall_seconds``), with the script's own figures under ``figures``; see
:mod:`veil.bench`, which the library's benchmarks (``veil bench table2`` / ``table4``) use directly.

Use::

    from _common import Envelope, publish             # bench/ is on sys.path when a script runs
    env = Envelope("attacks", seed=args.seed, device=device)   # starts the wall clock
    ...
    publish(HERE / "results" / "attacks.json", env.finish(figures), markdown_text)

Importing this module also puts ``src/`` on ``sys.path``, so a script works from a fresh clone
without installing Veil (what each script's own ``sys.path.insert`` did).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from veil.bench import ENVELOPE_FIELDS, Envelope, command_line, environment, write_result  # noqa: E402
from veil.io import write_text  # noqa: E402


def write_markdown(path: str | Path, text: str) -> Path:
    """Atomically write a markdown companion of a result."""
    return write_text(path, text)


def publish(path: str | Path, payload: dict[str, Any], markdown: str, show: bool = True) -> Path:
    """Write a result (JSON, with the envelope) and its markdown beside it (same name, ``.md``); print the markdown."""
    path = Path(path)
    write_result(path, payload)
    write_markdown(path.with_suffix(".md"), markdown)
    if show:
        print(markdown)
    return path


def run_conditions(data: str | Path) -> dict[str, Any]:
    """What a figure was measured under besides the code: the machine's load average (1, 5, 15 min) and how
    the face images were aligned (the ``_align.json`` an aligning step left at the top of ``data``, if any)."""
    conditions: dict[str, Any] = {"load_average": list(os.getloadavg())}
    record = Path(data) / "_align.json"
    if record.is_file():
        conditions["preprocess"] = json.loads(record.read_text())
    return conditions


def pct(r: dict) -> str:
    """A rate with its 95% interval, in percent: ``71.21% [66.00, 76.00]``."""
    return f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"


__all__ = ["ENVELOPE_FIELDS", "HERE", "Envelope", "command_line", "environment", "pct", "publish", "run_conditions",
           "write_markdown", "write_result"]
