"""What every command shares: one console, and VeilError turned into a one-line message and exit code 2."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from veil.errors import VeilError

# A log file or a pipe has no width; rich would then assume 80 columns and cut the demo's attack table to
# "t…" and "9…". Off a terminal (and unless COLUMNS says otherwise) print tables at a width that fits them.
_PIPE_WIDTH = 160
console = Console(
    stderr=True,
    width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH,
)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn a VeilError into ``error: <message>`` and exit status 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VeilError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def run(app: typer.Typer) -> None:
    app()
