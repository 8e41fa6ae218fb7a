"""``python -m veil.serve --recnet R --gallery G --port P``: the same server as ``veil serve``, with a slim start-up.

It imports only the server (not the whole CLI with every attack), so it starts in about a second;
the tests and ``bench/serve.py`` launch the server this way. The options are ``veil serve``'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from veil.errors import VeilError
from veil.serve.config import ServerConfig, check_exposure

DEFAULTS = ServerConfig(recnet=Path("recnet.safetensors"))


def parse(argv: list[str] | None = None) -> ServerConfig:
    p = argparse.ArgumentParser(prog="python -m veil.serve", description=__doc__)
    p.add_argument("--recnet", required=True, type=Path)
    p.add_argument("--gallery", default=DEFAULTS.gallery)
    p.add_argument("--host", default=DEFAULTS.host)
    p.add_argument("--port", type=int, default=DEFAULTS.port)
    p.add_argument("--max-body", type=int, default=DEFAULTS.max_body)
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch)
    p.add_argument("--max-abs", type=float, default=DEFAULTS.max_abs)
    p.add_argument("--threads", type=int, default=DEFAULTS.threads)
    p.add_argument("--credentials", type=Path, default=None)
    p.add_argument("--tls-cert", type=Path, default=None)
    p.add_argument("--tls-key", type=Path, default=None)
    p.add_argument("--insecure-public", action="store_true")
    p.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections)
    p.add_argument("--header-timeout", type=float, default=DEFAULTS.header_timeout)
    p.add_argument("--body-timeout", type=float, default=DEFAULTS.body_timeout)
    p.add_argument("--idle-timeout", type=int, default=DEFAULTS.idle_timeout)
    p.add_argument("--max-connections-per-address", type=int, default=DEFAULTS.max_connections_per_address)
    p.add_argument("--handshake-timeout", type=float, default=DEFAULTS.handshake_timeout)
    p.add_argument("--auth-failures-burst", type=int, default=DEFAULTS.auth_failures_burst)
    p.add_argument("--auth-failures-per-second", type=float, default=DEFAULTS.auth_failures_per_second)
    return ServerConfig(**{k: v for k, v in vars(p.parse_args(argv)).items()})


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    try:
        check_exposure(cfg)  # before torch is imported: a refused start is instant
        from veil.serve.app import run_server

        run_server(cfg)
    except VeilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
