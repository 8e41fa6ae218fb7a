"""A tiny SYNTHETIC client FG + server RecNet (random weights, 32 px) and a real server process on loopback."""

from __future__ import annotations

import os
import socket
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
            if httpx.get(url + "/health", timeout=1.0, verify=verify).status_code == 200:
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
    srv = start_server(tiny_models["recnet"], tmp_path_factory.mktemp("gallery") / "gallery.safetensors")
    yield srv
    srv.stop()
