"""One result envelope for every benchmark: the fields each ``bench/results/*.json`` carries.

Why: each bench script used to write its own JSON shape, so a reader (the README tables, ``veil report``,
a reviewer comparing runs) had to learn one layout per script. Every result now carries the same
top-level fields, with the benchmark's figures under ``figures``:

``benchmark``      the benchmark's name (``attacks``, ``table2``, ...)
``command``        the command line that reproduces the file
``device``         the device it ran on (``cpu``, ``cuda:0``)
``environment``    library versions, platform, CPU threads (and the GPU's name on CUDA)
``seed``           the seed of the run
``wall_seconds``   wall time of the whole run
``figures``        the results themselves (the benchmark's own shape)

A result whose older readers look for fields at the top level (``veil report`` reads a run's
``table2.json`` rows, ``veil bench table4 --merge`` a sweep's settings) keeps them there as
``Envelope.finish``'s extra fields; its ``figures`` then hold the headline. The library's benchmarks
(``veil bench table2``, ``veil bench table4``) use this module directly; the scripts under ``bench/``
through ``bench/_common.py``.
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.io import write_json

ENVELOPE_FIELDS = ("benchmark", "command", "device", "environment", "seed", "wall_seconds", "figures")


def environment(device: Any = "cpu") -> dict[str, Any]:
    """Library versions and the machine, for the envelope (imports torch lazily: cheap scripts stay cheap)."""
    import numpy
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "numpy": numpy.__version__, "platform": platform.platform(), "device": str(device),
                            "cpu_threads": torch.get_num_threads()}
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency of Veil
        pass
    dev = torch.device(device)
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def command_line(argv: list[str] | None = None) -> str:
    """The command that reproduces this run: ``python bench/NAME.py ARGS``."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]) if argv else Path("bench")
    shown = f"bench/{script.name}" if script.suffix == ".py" else str(script)
    return shlex.join(["python", shown, *argv[1:]])


@dataclass
class Envelope:
    """The common fields of a bench result; the wall clock starts when it is made.

    ``versions``: further library versions for ``environment`` (e.g. the HTTP stack of a serving benchmark).
    """

    benchmark: str
    seed: int | None = None
    device: Any = "cpu"
    command: str = field(default_factory=command_line)
    started: float = field(default_factory=time.time)
    versions: dict[str, str] = field(default_factory=dict)

    def finish(self, figures: Any, **extra: Any) -> dict[str, Any]:
        """The JSON payload: the envelope's fields, ``figures``, and any ``extra`` top-level fields."""
        clash = sorted(set(extra) & set(ENVELOPE_FIELDS))
        if clash:
            raise ValueError(f"extra fields {clash} would overwrite the envelope")
        return {"benchmark": self.benchmark, "command": self.command, "device": str(self.device),
                "environment": {**environment(self.device), **self.versions}, "seed": self.seed,
                "wall_seconds": time.time() - self.started, "figures": figures, **extra}


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write a bench result (JSON); refuses a payload without the envelope's fields."""
    missing = [f for f in ENVELOPE_FIELDS if f not in payload]
    if missing:
        raise ValueError(f"bench result {path} lacks envelope fields {missing}: build it with Envelope.finish")
    return write_json(path, payload)


__all__ = ["ENVELOPE_FIELDS", "Envelope", "command_line", "environment", "write_result"]
