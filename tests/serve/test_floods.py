"""Issue 24, finding 1: connection floods against the real server process, with lowered limits.

Before the fix: with TLS, connections that never sent a ClientHello waited out asyncio's 60 s
handshake timeout outside every cap, so ``/health`` timed out; without TLS, half-sent bodies
reopened at once were accepted past the cap (answered 503 but kept) until ``accept`` hit EMFILE and
logged a traceback per refusal. Now a gate at ``accept`` applies the total and per-address caps and
a descriptor reserve before the handshake, which has a deadline of its own, and log lines a client
can trigger are rate-limited.

/health is asked from 127.0.0.2, another client than the flooder (127.0.0.1).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veil.serve.flooding import percentile, probe_health

from .conftest import SERVER_ENV, free_port, server_command, ssl_verify


def launch(tiny_models: dict, folder: Path, extra: tuple[str, ...], nofile: int | None = None,
           https: bool = False, verify: object = True) -> tuple[subprocess.Popen, str, Path]:
    """The server with its output in a file (so log growth can be measured), waiting until /health answers."""
    import httpx

    port = free_port()
    log = folder / "server.log"

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    with log.open("wb") as out:
        proc = subprocess.Popen(server_command(tiny_models["recnet"], folder / "gallery.safetensors", port,
                                               extra=extra), env=SERVER_ENV, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=limit)
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(url + "/health", timeout=1, verify=verify).status_code == 200:  # type: ignore[arg-type]
                return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def flood_while_probing(url: str, kind: str, connections: int, seconds: float, verify: object = True) -> tuple[
        dict, list[tuple[float, int]]]:
    port = url.rsplit(":", 1)[1]
    flooder = subprocess.Popen([sys.executable, "-m", "veil.serve.flooding", "127.0.0.1", port, kind,
                                str(connections), str(seconds)], env=SERVER_ENV, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let the flood build up
    samples = probe_health(url, seconds - 1.5, every=0.2, verify=verify)  # type: ignore[arg-type]
    out, _ = flooder.communicate(timeout=60)
    return json.loads(out), samples


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def assert_health_held(samples: list[tuple[float, int]]) -> None:
    latencies = [t for t, _ in samples]
    assert samples and all(status == 200 for _, status in samples), samples
    assert percentile(latencies, 0.99) <= 1.0, latencies


def test_tls_connections_without_a_hello_do_not_starve_health(tiny_models, tls, tmp_path):
    cert, key = tls
    extra = ("--tls-cert", str(cert), "--tls-key", str(key), "--max-connections", "40",
             "--max-connections-per-address", "8", "--handshake-timeout", "1")
    proc, url, log = launch(tiny_models, tmp_path, extra, nofile=400, https=True, verify=ssl_verify(str(cert)))
    try:
        counts, samples = flood_while_probing(url, "hold", 600, 6.0, verify=ssl_verify(str(cert)))
    finally:
        stop(proc)
    assert_health_held(samples)
    assert counts["refused"] > 0  # the flooder was shed, not queued
    assert log.stat().st_size < 20_000, log.read_text()[-3000:]


def test_half_sent_bodies_reopened_at_once_with_few_descriptors(tiny_models, tmp_path):
    extra = ("--max-connections", "40", "--max-connections-per-address", "8", "--body-timeout", "30")
    proc, url, log = launch(tiny_models, tmp_path, extra, nofile=400)
    try:
        counts, samples = flood_while_probing(url, "half-body", 600, 6.0)
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    assert_health_held(samples)
    assert counts["refused"] > 0
    assert "Traceback" not in text and len(text) < 20_000, text[-3000:]


def test_near_the_descriptor_limit_connections_are_shed_without_tracebacks(tiny_models, tmp_path):
    """Caps above what the descriptors allow: the gate sheds near the limit instead of hitting EMFILE."""
    import httpx

    extra = ("--max-connections", "1000", "--max-connections-per-address", "1000", "--body-timeout", "30")
    proc, url, log = launch(tiny_models, tmp_path, extra, nofile=400)
    try:
        counts, _samples = flood_while_probing(url, "half-body", 600, 5.0)
        time.sleep(0.5)
        after = httpx.get(url + "/health", timeout=5).status_code
        alive = proc.poll() is None
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    assert alive and after == 200
    assert counts["refused"] > 0 and "descriptor limit" in text
    assert "Traceback" not in text and "Too many open files" not in text, text[-3000:]
    assert len(text) < 20_000


@pytest.mark.parametrize("per_address", [4])
def test_per_address_cap_leaves_room_for_others(tiny_models, tmp_path, per_address):
    import socket

    import httpx

    proc, url, _log = launch(tiny_models, tmp_path, ("--max-connections-per-address", str(per_address)))
    port = int(url.rsplit(":", 1)[1])
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(per_address)]
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(5)
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")  # this address is at its cap
        r = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")).get(url + "/health")
        assert r.status_code == 200  # another client is not
        for s in [*held, extra]:
            s.close()
    finally:
        stop(proc)


def test_admission_counts_per_address_total_and_descriptors():
    from veil.serve.transport import Admission, ConnectionLimits

    a = Admission(ConnectionLimits(total=5, per_address=2), fd_limit=10_000)
    assert [a.admit("x") for _ in range(3)] == [None, None, "per-address cap"]
    assert [a.admit(f"y{i}") for i in range(4)] == [None, None, None, "connection cap"]
    a.release("x")
    assert a.admit("x") is None and a.by_address["x"] == 2 and a.open == 5
    low = Admission(ConnectionLimits(total=10_000, per_address=10_000), fd_limit=100)  # reserve: half of 100
    admitted = sum(low.admit("z") is None for _ in range(100))
    assert 0 < admitted < 50 and low.refused["descriptor limit"] == 100 - admitted
