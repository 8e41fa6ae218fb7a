"""The designer's checkpoints of layer state: in memory while training, a safetensors file on disk.

File layout: one safetensors file; tensor ``L<index>.<name>`` is tensor ``<name>`` of layer ``index``
(``p.*`` parameters, ``m.*`` momentum buffers); metadata holds the step and the model spec as JSON.
Written with mode 0600 through ``veil.secretfile.write_private`` (unique ``O_EXCL | O_NOFOLLOW`` temporary file,
renamed; a symlink at the destination is refused, never followed): the weights are the designer's secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from veil.errors import VeilError
from veil.secretfile import write_private


@dataclass
class Checkpoint:
    step: int
    states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    verified: bool = False  # passed a test-phase accuracy check (or is the designer's own initial state)


def write(path: str | Path, ckpt: Checkpoint, spec_layers: list[dict]) -> Path:
    """Save ``ckpt`` to ``path`` (0600)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"L{i}.{k}": v.contiguous() for i, st in ckpt.states.items() for k, v in st.items()}
    meta = {"step": str(ckpt.step), "verified": str(ckpt.verified), "layers": json.dumps(spec_layers)}
    return write_private(p, save(tensors, metadata=meta))


def read(path: str | Path) -> tuple[Checkpoint, list[dict]]:
    """Load a checkpoint written by ``write``; returns it with the layer specs it was taken for."""
    p = Path(path)
    if not p.is_file():
        raise VeilError(f"checkpoint {p} not found")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            states: dict[int, dict[str, torch.Tensor]] = {}
            for key in f.keys():
                layer, _, name = key.partition(".")
                states.setdefault(int(layer[1:]), {})[name] = f.get_tensor(key)
        ck = Checkpoint(step=int(meta["step"]), states=states, verified=meta.get("verified") == "True")
        return ck, json.loads(meta["layers"])
    except (KeyError, ValueError, OSError) as exc:
        raise VeilError(f"checkpoint {p} is unreadable ({type(exc).__name__}: {exc})") from None
