"""``veil serve``: the trusted XNN-d recognition server; ``veil serve-credentials``: who may call it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError


@friendly
def serve(recnet: Path = typer.Option(..., help="Server RecNet (recnet_server.safetensors from `veil xnnd train`)."),
          gallery: Path = typer.Option(Path("gallery.safetensors"), help="Gallery file (created mode 0600, kept "
                                       "across restarts, locked against a second server)."),
          host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default; any other needs TLS and "
                                   "--credentials, or --insecure-public)."),
          port: int = typer.Option(8000), max_body: int = typer.Option(4 * 1024 * 1024, help="Largest body (bytes)."),
          max_batch: int = typer.Option(64, help="Most feature rows per request."),
          max_abs: float = typer.Option(1e4, help="Largest feature magnitude accepted."),
          threads: int = typer.Option(1, help="Torch threads for RecNet."),
          credentials: Path = typer.Option(None, help="Client credentials (from `veil serve-credentials add`); "
                                           "without it the server is open to local callers."),
          tls_cert: Path = typer.Option(None, help="TLS certificate (PEM) for HTTPS."),
          tls_key: Path = typer.Option(None, help="TLS private key (PEM, mode 0600)."),
          insecure_public: bool = typer.Option(False, help="Listen off loopback without TLS or credentials anyway."),
          max_connections: int = typer.Option(256, help="Concurrent connections; more are closed at accept (503 "
                                              "without TLS)."),
          max_connections_per_address: int = typer.Option(32, help="Concurrent connections from one client "
                                                          "address."),
          handshake_timeout: float = typer.Option(5.0, help="Seconds to complete the TLS handshake."),
          auth_failures_burst: int = typer.Option(20, help="Failed authentications a client address may make "
                                                  "at once before 429."),
          auth_failures_per_second: float = typer.Option(1.0, help="... and then per second."),
          header_timeout: float = typer.Option(10.0, help="Seconds to send a request's line and headers."),
          body_timeout: float = typer.Option(30.0, help="Seconds to send a request's body."),
          idle_timeout: int = typer.Option(5, help="Seconds an idle keep-alive connection stays open.")) -> None:
    """Serve enrol / identify over HTTP(S); bodies are safetensors features, never pickles."""
    from veil.serve.config import ServerConfig, check_exposure

    cfg = ServerConfig(recnet, gallery, host, port, max_body, max_batch, max_abs, threads, credentials, tls_cert,
                       tls_key, insecure_public, max_connections, header_timeout, body_timeout, idle_timeout,
                       max_connections_per_address, handshake_timeout, auth_failures_burst,
                       auth_failures_per_second)
    check_exposure(cfg)
    from veil.serve.app import run_server

    run_server(cfg)


credentials_app = typer.Typer(help="Issue and revoke the recognition service's client credentials.",
                              no_args_is_help=True)
FILE = typer.Option(Path("credentials.json"), "--file", help="The server's credentials file (mode 0600).")


@credentials_app.command("add")
@friendly
def add(client: str = typer.Argument(..., help="Client id (letters, digits, '_' or '-')."),
        rights: str = typer.Option("identify", help="Comma-separated: identify, enrol, admin."),
        token_out: Path = typer.Option(..., help="Where to write the client's token (mode 0600; give it to the "
                                       "client, it is not kept by the server)."),
        file: Path = FILE, replace: bool = typer.Option(False, help="Issue a new token to an existing client."),
        force: bool = typer.Option(False, help="Overwrite an existing --token-out file.")) -> None:
    """Register a client and write its bearer token; the server keeps only the token's SHA-256."""
    from veil.secretfile import write_private
    from veil.serve.auth import Credentials, parse_rights

    for path, what in ((file, "--file"), (token_out, "--token-out")):  # refused before anything is written
        if path.is_symlink():
            raise VeilError(f"{what} {path} is a symbolic link; refusing to write a secret through it")
    creds = Credentials.load(file) if file.exists() else Credentials()
    token = creds.add(client, parse_rights(rights), replace=replace)
    write_private(token_out, token.encode() + b"\n", overwrite=force)
    creds.save(file)
    console.print(f"client {client!r} ({rights}) added to {file}; token written to {token_out} (mode 0600). "
                  "A running server reads the file at start: restart it.")


@credentials_app.command("revoke")
@friendly
def revoke(client: str = typer.Argument(...), file: Path = FILE) -> None:
    """Remove a client; its token stops working when the server restarts."""
    from veil.serve.auth import Credentials

    creds = Credentials.load(file)
    creds.revoke(client)
    creds.save(file)
    console.print(f"client {client!r} revoked in {file}; restart the server")


@credentials_app.command("list")
@friendly
def list_clients(file: Path = FILE) -> None:
    """Clients and their rights (never tokens)."""
    from veil.serve.auth import Credentials

    table = Table(title=str(file))
    table.add_column("client")
    table.add_column("rights")
    for cid, entry in sorted(Credentials.load(file).clients.items()):
        table.add_row(cid, ", ".join(entry["rights"]))
    console.print(table)
