"""A tiny SYNTHETIC client FG + server RecNet (random weights, 32 px) and a real server process on loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from veil.models.extractor import ExtNet, ExtractorConfig, build_backbone
from veil.models.recnet import RecNet, RecNetConfig, save_recnet
from veil.xnnd.generator import FeatureGenerator, NoiseEncoder, save_generator

REPO = Path(__file__).resolve().parents[2]
MAX_BODY = 512 * 1024


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    recnet: Path
    gallery: Path
    extra: tuple[str, ...] = ()
    verify: str | bool = True

    def restart(self) -> None:
        """Stop the process and start a new one on the same RecNet, gallery file and options (a new port)."""
        self.stop()
        fresh = start_server(self.recnet, self.gallery, extra=self.extra, verify=self.verify)
        self.url, self.port, self.proc = fresh.url, fresh.port, fresh.proc

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(recnet: Path, gallery: Path, port: int, max_body: int = MAX_BODY,
                   extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "veil.serve", "--recnet", str(recnet), "--gallery", str(gallery),
            "--port", str(port), "--max-body", str(max_body), "--max-batch", "16", *extra]


def ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's ``verify``: a CA file path becomes an SSL context (httpx deprecates plain paths)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


SERVER_ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def start_server(recnet: Path, gallery: Path, max_body: int = MAX_BODY, timeout: float = 60.0,
                 extra: tuple[str, ...] = (), verify: str | bool = True) -> Server:
    """Launch ``python -m veil.serve`` with ``extra`` options; ``--tls-cert`` in them means https."""
    port = free_port()
    proc = subprocess.Popen(server_command(recnet, gallery, port, max_body, extra), env=SERVER_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"{'https' if '--tls-cert' in extra else 'http'}://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1.0, verify=ssl_verify(verify)).status_code == 200:
                return Server(url, port, proc, recnet, gallery, tuple(extra), verify)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """SYNTHETIC: an untrained 32-px ExtNet + noise encoder (client file) and a random RecNet (server file)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_models")
    cfg = ExtractorConfig(img_size=32, stem_stages=2, embed_dim=64, num_heads=2, depth=1, ext_depth=1)
    ext = ExtNet(build_backbone(cfg), cfg)
    fg = FeatureGenerator(ext, NoiseEncoder(ext, 0.5))
    save_generator(fg, d / "fg.safetensors", {"synthetic": True})
    tokens, dim = ext.token_shape
    recnet = RecNet(RecNetConfig(tokens, dim, dim=32, depth=1, num_heads=2, emb_dim=16)).eval()
    save_recnet(recnet, d / "recnet.safetensors", {"synthetic": True, "xnnd": {"role": "server"}})
    return {"fg": d / "fg.safetensors", "recnet": d / "recnet.safetensors", "tokens": tokens, "dim": dim, "dir": d}


@pytest.fixture(scope="session")
def server(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tiny_models["recnet"], tmp_path_factory.mktemp("gallery") / "gallery.db")
    yield srv
    srv.stop()


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (its own CA) and its 0600 key."""
    from veil.serve.selfsigned import write_self_signed

    return write_self_signed(folder / "server.crt", folder / "server.key")


@dataclass
class Issued:
    """A credentials file and one 0600 token file per client."""

    file: Path
    tokens: dict[str, Path]

    def token(self, client: str) -> str:
        return self.tokens[client].read_text().strip()


CLIENTS = {"kiosk": "identify", "registrar": "enrol", "registrar2": "enrol", "boss": "identify,enrol,admin"}


def issue_credentials(folder: Path, clients: dict[str, str] = CLIENTS) -> Issued:
    from veil.secretfile import write_private
    from veil.serve.auth import Credentials, parse_rights

    creds = Credentials()
    tokens = {}
    for client, rights in clients.items():
        tokens[client] = write_private(folder / f"{client}.token", creds.add(client, parse_rights(rights)).encode())
    return Issued(creds.save(folder / "credentials.json"), tokens)


@pytest.fixture(scope="session")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return issue_credentials(tmp_path_factory.mktemp("credentials"))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def hardened(tiny_models: dict, issued: Issued, tls: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server over TLS with credentials and short deadlines (1 s for headers, 2 s for a body)."""
    cert, key = tls
    extra = ("--credentials", str(issued.file), "--tls-cert", str(cert), "--tls-key", str(key),
             "--header-timeout", "1", "--body-timeout", "2", "--max-connections", "12")
    srv = start_server(tiny_models["recnet"], tmp_path_factory.mktemp("hardened") / "gallery.db",
                       extra=extra, verify=str(cert))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (tests/serve/postgres.py), or skip where the binaries are missing."""
    from tests.serve.postgres import start_cluster

    try:
        cluster = start_cluster()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        if os.environ.get("VEIL_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"no PostgreSQL cluster: {exc}")
    yield cluster
    cluster.stop()
    import shutil

    shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: a fresh SQLite file, or a fresh database in the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.db")
    return request.getfixturevalue("postgres").new_database()
