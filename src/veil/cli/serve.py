"""``veil serve``: the trusted XNN-d recognition server (loads only a RecNet file and its gallery)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.common import friendly


@friendly
def serve(recnet: Path = typer.Option(..., help="Server RecNet (recnet_server.safetensors from `veil xnnd train`)."),
          gallery: Path = typer.Option(Path("gallery.safetensors"), help="Gallery file (created, kept across "
                                       "restarts)."),
          host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
          port: int = typer.Option(8000), max_body: int = typer.Option(4 * 1024 * 1024, help="Largest body (bytes)."),
          max_batch: int = typer.Option(64, help="Most feature rows per request."),
          threads: int = typer.Option(1, help="Torch threads for RecNet.")) -> None:
    """Serve enrol / identify over HTTP; bodies are safetensors features, never pickles."""
    from veil.serve.app import run_server

    run_server(recnet, gallery, host, port, max_body, max_batch, threads)
