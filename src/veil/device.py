"""Where tensors run: CUDA when present, else the CPU with a sensible thread count."""

from __future__ import annotations

import os

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer`` ('cpu', 'cuda', 'cuda:1') wins; otherwise CUDA if available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads() -> None:
    """Use every core this process may use (cgroup/affinity aware), unless the user set a number."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
