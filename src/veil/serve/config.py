"""The server's options in one place, importable without torch (so a refused start is instant).

``veil serve`` and ``python -m veil.serve`` build a :class:`ServerConfig` and check its exposure
before anything heavy is imported or any file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veil.errors import VeilError
from veil.secretfile import check_private
from veil.serve.auth import is_loopback

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
# FG features are LayerNorm'd tokens (RMS 1) plus noise of RMS eps: no element is anywhere near this.
# The bound keeps every value the RecNet sees far from float32 overflow (a single 3e38 element gave
# NaN embeddings that poisoned the gallery: issue 12, finding 2).
DEFAULT_MAX_ABS = 1e4


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``veil serve`` and ``python -m veil.serve`` take, in one place."""

    recnet: Path
    gallery: str = "gallery.db"  # a SQLite file, or a postgresql:// URL (several workers and hosts)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH
    max_abs: float = DEFAULT_MAX_ABS
    threads: int = 1
    credentials: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_public: bool = False
    max_connections: int = 256
    header_timeout: float = 10.0
    max_connections_per_address: int = 32
    handshake_timeout: float = 5.0
    auth_failures_burst: int = 20  # failed authentications an address may make at once ...
    auth_failures_per_second: float = 1.0  # ... and then per second (429 with Retry-After past that)
    body_timeout: float = 30.0
    idle_timeout: int = 5


def check_exposure(cfg: ServerConfig) -> None:
    """Refuse to listen off loopback without TLS and credentials, unless ``insecure_public`` says so.

    Also refuses a TLS private key that group or others can read, as ssh does.
    """
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise VeilError("give both --tls-cert and --tls-key (or neither)")
    if cfg.tls_key is not None and cfg.tls_key.exists():
        check_private(cfg.tls_key, "TLS private key")
    if is_loopback(cfg.host) or cfg.insecure_public:
        return
    missing = [what for what, ok in (("TLS (--tls-cert/--tls-key)", cfg.tls_cert is not None),
                                     ("client credentials (--credentials)", cfg.credentials is not None)) if not ok]
    if missing:
        raise VeilError(f"refusing to listen on {cfg.host} (not loopback) without {' and '.join(missing)}: bearer "
                        "tokens and gallery names would cross the network in clear or unauthenticated; pass "
                        "--insecure-public to do it anyway")
