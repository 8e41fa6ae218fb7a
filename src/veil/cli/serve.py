"""``veil serve``: the trusted XNN-d recognition server; ``veil serve-credentials``: who may call it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from veil.cli.common import console, friendly
from veil.errors import VeilError


@friendly
def serve(recnet: Path = typer.Option(..., help="Server RecNet (recnet_server.safetensors from `veil xnnd train`)."),
          gallery: str = typer.Option("gallery.db", help="Gallery database: a SQLite file (created mode 0600; "
                                      "several servers may share it) or a postgresql:// URL (several hosts)."),
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

    cfg = ServerConfig(  # by keyword: positionally, body_timeout landed in max_connections_per_address (mypy saw it)
        recnet=recnet, gallery=gallery, host=host, port=port, max_body=max_body, max_batch=max_batch, max_abs=max_abs,
        threads=threads, credentials=credentials, tls_cert=tls_cert, tls_key=tls_key, insecure_public=insecure_public,
        max_connections=max_connections, header_timeout=header_timeout, body_timeout=body_timeout,
        idle_timeout=idle_timeout, max_connections_per_address=max_connections_per_address,
        handshake_timeout=handshake_timeout, auth_failures_burst=auth_failures_burst,
        auth_failures_per_second=auth_failures_per_second)
    check_exposure(cfg)
    from veil.serve.app import run_server

    run_server(cfg)


credentials_app = typer.Typer(help="Issue and revoke the recognition service's client credentials.",
                              no_args_is_help=True)
FILE = typer.Option(Path("credentials.json"), "--file", help="The server's credentials file (mode 0600).")
GALLERY = typer.Option(None, "--gallery", help="Keep the client in this gallery database (SQLite file or "
                       "postgresql:// URL) instead of --file: a running server sees the change on its next request.")


@credentials_app.command("add")
@friendly
def add(client: str = typer.Argument(..., help="Client id (letters, digits, '_' or '-')."),
        rights: str = typer.Option("identify", help="Comma-separated: identify, enrol, admin."),
        token_out: Path = typer.Option(..., help="Where to write the client's token (mode 0600; give it to the "
                                       "client, it is not kept by the server)."),
        file: Path = FILE, replace: bool = typer.Option(False, help="Issue a new token to an existing client."),
        force: bool = typer.Option(False, help="Overwrite an existing --token-out file."),
        gallery: str = GALLERY) -> None:
    """Register a client and write its bearer token; the server keeps only the token's SHA-256."""
    from veil.secretfile import write_private
    from veil.serve.auth import Credentials, parse_rights

    for path, what in ((file, "--file"), (token_out, "--token-out")):  # refused before anything is written
        if path.is_symlink():
            raise VeilError(f"{what} {path} is a symbolic link; refusing to write a secret through it")
    if gallery is not None:
        with _store(gallery) as store:
            if store.client(client) is not None and not replace:  # before the token file is written
                raise VeilError(f"client {client!r} already exists (pass --replace to issue it a new token)")
    creds = Credentials.load(file) if gallery is None and file.exists() else Credentials()
    token = creds.add(client, parse_rights(rights), replace=replace)
    write_private(token_out, token.encode() + b"\n", overwrite=force)
    if gallery is not None:
        with _store(gallery) as store:
            entry = creds.clients[client]
            store.put_client(client, entry["rights"], entry["sha256"], replace)
        where = gallery
    else:
        creds.save(file)
        where = str(file)
    console.print(f"client {client!r} ({rights}) added to {where}; token written to {token_out} (mode 0600). "
                  "A running server uses it from its next request on.")


@credentials_app.command("revoke")
@friendly
def revoke(client: str = typer.Argument(...), file: Path = FILE, gallery: str = GALLERY) -> None:
    """Remove a client; a running server refuses its token from the next request on."""
    from veil.errors import VeilError
    from veil.serve.auth import Credentials

    if gallery is not None:
        with _store(gallery) as store:
            if not store.drop_client(client):
                raise VeilError(f"no client {client!r} in {gallery}")
        console.print(f"client {client!r} revoked in {gallery}")
        return
    creds = Credentials.load(file)
    creds.revoke(client)
    creds.save(file)
    console.print(f"client {client!r} revoked in {file}")


@credentials_app.command("list")
@friendly
def list_clients(file: Path = FILE, gallery: str = GALLERY) -> None:
    """Clients and their rights (never tokens)."""
    from veil.serve.auth import Credentials

    table = Table(title=gallery or str(file))
    table.add_column("client")
    table.add_column("rights")
    if gallery is not None:
        with _store(gallery) as store:
            clients = store.clients()
    else:
        clients = Credentials.load(file).clients
    for cid, entry in sorted(clients.items()):
        table.add_row(cid, ", ".join(entry["rights"]))
    console.print(table)


@contextmanager
def _store(target: str) -> Iterator:
    """The gallery database's store with its tables made (no RecNet needed to manage clients)."""
    from veil.serve.store import TABLES, open_store

    store = open_store(target)
    try:
        with store.transaction() as cur:
            for sql in TABLES:
                cur.execute(sql.format(blob=store.blob))
        yield store
    finally:
        store.close()


gallery_app = typer.Typer(help="The recognition service's gallery database.", no_args_is_help=True)


@gallery_app.callback()
def gallery_group() -> None:
    """The recognition service's gallery database (SQLite file or postgresql:// URL)."""


@gallery_app.command("migrate")
@friendly
def migrate(old: Path = typer.Argument(..., help="Gallery in the old format (one safetensors file)."),
            new: str = typer.Argument(..., help="New gallery database: a SQLite file or a postgresql:// URL."),
            recnet: Path = typer.Option(..., help="The server RecNet the old gallery was enrolled with (its digest "
                                        "must match the old file's).")) -> None:
    """Copy an old safetensors gallery into a database, names, owners and rows, in one transaction per name."""
    from veil.serve.migrate import migrate_gallery

    report = migrate_gallery(old, new, recnet)
    console.print(f"{old} -> {new}: {report['entries']} entries of {report['names']} name(s) migrated"
                  + (f"; {report['skipped']} non-finite row(s) skipped" if report["skipped"] else "")
                  + (f"; {len(report['merged'])} look-alike name(s) merged into their first form: {report['merged']}"
                     if report["merged"] else ""))
