"""What every bench script shares: one result envelope and one atomic writer.

Why: each script used to write its own JSON shape and insert ``src`` into ``sys.path`` itself, so a
reader (the README tables, ``veil report``, a reviewer comparing runs) had to learn one layout per
script. Every ``bench/results/*.json`` now carries the same top-level fields, with the script's own
figures under ``figures``:

``benchmark``      the script's name (``attacks``, ``table2``, ...)
``command``        the command line that reproduces the file
``device``         the device it ran on (``cpu``, ``cuda:0``)
``environment``    library versions, platform, CPU threads (and the GPU's name on CUDA)
``seed``           the seed of the run
``wall_seconds``   wall time of the whole run
``figures``        the results themselves (the script's own shape)

Use::

    from _common import Envelope, write_result       # bench/ is on sys.path when a script runs
    env = Envelope("attacks", seed=args.seed, device=device)   # starts the wall clock
    ...
    write_result(HERE / "results" / "attacks.json", env.finish(figures))

Importing this module also puts ``src/`` on ``sys.path``, so a script works from a fresh clone
without installing Veil (what each script's own ``sys.path.insert`` did).
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from veil.io import write_json, write_text  # noqa: E402

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
    """The common fields of a bench result; the wall clock starts when it is made."""

    benchmark: str
    seed: int | None = None
    device: Any = "cpu"
    command: str = field(default_factory=command_line)
    started: float = field(default_factory=time.time)

    def finish(self, figures: Any, **extra: Any) -> dict[str, Any]:
        """The JSON payload: the envelope's fields, ``figures``, and any ``extra`` top-level fields."""
        clash = sorted(set(extra) & set(ENVELOPE_FIELDS))
        if clash:
            raise ValueError(f"extra fields {clash} would overwrite the envelope")
        return {"benchmark": self.benchmark, "command": self.command, "device": str(self.device),
                "environment": environment(self.device), "seed": self.seed,
                "wall_seconds": time.time() - self.started, "figures": figures, **extra}


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write a bench result (JSON); refuses a payload without the envelope's fields."""
    missing = [f for f in ENVELOPE_FIELDS if f not in payload]
    if missing:
        raise ValueError(f"bench result {path} lacks envelope fields {missing}: build it with Envelope.finish")
    return write_json(path, payload)


def write_markdown(path: str | Path, text: str) -> Path:
    """Atomically write a markdown companion of a result."""
    return write_text(path, text)


__all__ = ["Envelope", "ENVELOPE_FIELDS", "command_line", "environment", "write_markdown", "write_result"]
