"""Where Veil finds its default dataset and keeps its cache: one place, read by the library and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

from veil.errors import VeilError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lfw112"


def default_data() -> Path:
    """``$VEIL_DATA``, else LFW beside the checkout (``../shared/data/lfw112``)."""
    return Path(os.environ.get("VEIL_DATA", DEFAULT_DATA))


def resolve_data(data: str | Path | None) -> Path:
    """The dataset to use (the default one when None), checked to exist."""
    data = Path(data) if data else default_data()
    if not data.exists():
        raise VeilError(f"dataset not found: {data} (set VEIL_DATA or pass --data)")
    return data


def cache_dir() -> Path:
    """``$VEIL_CACHE``, else ``~/.cache/veil``: converted public weights and pre-trained extractors."""
    return Path(os.environ.get("VEIL_CACHE", Path.home() / ".cache" / "veil"))
