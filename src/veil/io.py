"""Files Veil writes and reads, in one place: atomic writes, and safetensors reads with one error.

Why a module of its own: a result, a split, a manifest or a checkpoint that is half written when a
process dies (out of memory, Ctrl-C, a preempted cloud job) is worse than none, because the next
step reads it as if it were whole. Every writer here writes a unique temporary file beside the
destination and renames it over the destination (atomic on POSIX: readers see the old file or the
new one). Secrets have their own writer with mode 0600 from the first byte (``veil.secretfile``);
this module is for everything that is not secret.

Reads of safetensors files (the only tensor format that crosses a trust boundary: no pickle) go
through :func:`read_safetensors` / :func:`read_safetensors_metadata`, so a missing, truncated or
foreign file is one :class:`~veil.errors.VeilError` whatever reads it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from veil.errors import VeilError


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a unique temporary path beside ``path``, then rename it over ``path``.

    ``write`` may be any function that creates a file at the path it is given (``Path.write_text``,
    ``safetensors.torch.save_file``, ``torch.onnx.export`` ...). On any error the temporary file is
    removed and the destination is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], payload: Any, indent: int | None = 2) -> Path:
    """Atomically write ``payload`` as JSON (anything not JSON-native is written with ``str``)."""
    return write_text(path, json.dumps(payload, indent=indent, default=str))


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str],
                     metadata: dict[str, str] | None = None) -> Path:
    """Atomically write ``tensors`` (made contiguous, on the CPU) and string ``metadata`` as safetensors."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def save_figure(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    """Atomically write a matplotlib figure; the format comes from ``path``'s suffix (the temporary name has none)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs))


def _unreadable(path: str | os.PathLike[str], exc: Exception) -> VeilError:
    if isinstance(exc, FileNotFoundError):
        return VeilError(f"checkpoint not found: {path}")
    return VeilError(f"{path} is not a readable safetensors file ({exc})")


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if it has none); reads no tensor data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt files
        raise _unreadable(path, exc) from None


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise _unreadable(path, exc) from None


__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "save_safetensors", "save_figure",
           "read_safetensors", "read_safetensors_metadata"]
