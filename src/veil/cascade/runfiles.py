"""What ``veil cascade train`` leaves on disk, and how it never loses a trained run (issue 24, finding 4).

Why a module: the run directory was created and written only after all epochs, with plain writes, so
a full or read-only disk cost the trained model and the session secrets (with a raw traceback and the
nodes left bound), and an existing run was silently replaced. Now:

- :func:`check_out_dir` runs *before* training: ``out`` must be creatable and writable (a probe file
  is written and removed) and hold no earlier run unless ``force``;
- :func:`save_run` writes ``model.safetensors`` and ``cascade.json`` (0600, ``veil.secretfile``) and
  ``metrics.json`` (``veil.io``), each atomically;
- when that fails anyway, :func:`save_recovery` keeps the model and the metrics in one 0600
  safetensors file in the first writable place of ``out``'s parent, the home directory and the
  temporary directory, and the caller releases the nodes (their session secrets are then worthless,
  so the recovery file does not carry them).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import save

from veil.cascade.checkpoint import Checkpoint
from veil.cascade.checkpoint import write as write_checkpoint
from veil.errors import VeilError
from veil.io import write_json
from veil.secretfile import write_private

RUN_FILES = ("model.safetensors", "cascade.json", "metrics.json")


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse, before any training, an ``out`` that holds an earlier run (without ``force``) or cannot be written."""
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if earlier and not force:
        raise VeilError(f"{out} already holds a cascade run ({', '.join(earlier)}); refusing to replace it "
                        "(pass --force to replace it, or choose another --out)")
    if out.exists() and not out.is_dir():
        raise VeilError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe.{secrets.token_hex(6)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise VeilError(f"--out {out} is not writable ({exc.strerror or exc}); nothing was trained") from None


def save_run(out: Path, final: Checkpoint, spec_layers: list[dict], manifest: dict[str, Any],
             metrics: dict[str, Any]) -> None:
    """Write the run's three files, each atomically (the secrets 0600); raises ``OSError`` when the disk refuses."""
    write_checkpoint(out / "model.safetensors", final, spec_layers)
    write_manifest(out / "cascade.json", manifest)
    write_json(out / "metrics.json", metrics, indent=1)


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    """``cascade.json``: the cascade's order, addresses and per-node session secrets are the designer's secret,
    written 0600 through a unique O_EXCL | O_NOFOLLOW temporary file and renamed (a planted symlink is refused)."""
    return write_private(path, json.dumps(manifest, indent=1).encode())


def recovery_places(out: Path) -> list[Path]:
    return [out.parent, Path.home() / ".veil" / "recovery", Path(tempfile.gettempdir())]


def save_recovery(out: Path, final: Checkpoint, spec_layers: list[dict], metrics: dict[str, Any]) -> Path:
    """The model and the metrics in one 0600 safetensors file (readable by ``veil.cascade.checkpoint.read``)."""
    tensors = {f"L{i}.{k}": v.contiguous() for i, st in final.states.items() for k, v in st.items()}
    meta = {"step": str(final.step), "verified": str(final.verified), "layers": json.dumps(spec_layers),
            "metrics": json.dumps(metrics, default=str), "meant_for": str(out)}
    blob = save(tensors, metadata=meta)
    name = f"veil-cascade-recovery-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.safetensors"
    errors = []
    for place in recovery_places(out):
        try:
            return write_private(place / name, blob, overwrite=False)
        except (OSError, VeilError) as exc:
            errors.append(f"{place}: {exc}")
    raise VeilError(f"the trained run could not be written to {out} nor kept in a recovery file "
                    f"({'; '.join(errors)})")
