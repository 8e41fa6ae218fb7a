"""Issue 12, finding 3, against the real server process: TLS, exposure, the gallery lock, deadlines, the cap.

Before the fix: ``--host 0.0.0.0`` bound silently, a second server on the same gallery started and
lost half the acknowledged enrolments, and 1,100 half-sent requests held their descriptors until
``/health`` timed out.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from veil.cli.client import app as client_app
from veil.data.synthetic import synthetic_faces
from veil.errors import VeilError
from veil.serve.client import ServiceClient
from veil.serve.config import ServerConfig, check_exposure

from .conftest import SERVER_ENV, free_port, server_command, ssl_verify
from .test_client_cli import write_images
from .test_server import feats


def run_server_expecting_failure(args: list[str], timeout: float = 60) -> str:
    proc = subprocess.run(args, env=SERVER_ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return proc.stderr




@pytest.mark.parametrize("extra,missing", [((), "TLS"), (("--credentials", "c.json"), "TLS"),
                                           (("--tls-cert", "c", "--tls-key", "k"), "credentials")])
def test_refuses_to_listen_off_loopback_without_tls_and_credentials(tiny_models, tmp_path, extra, missing):
    err = run_server_expecting_failure(server_command(tiny_models["recnet"], tmp_path / "g", free_port(),
                                                      extra=("--host", "0.0.0.0", *extra)))
    assert "refusing to listen on 0.0.0.0" in err and missing in err and "--insecure-public" in err
    assert not (tmp_path / "g").exists()


def test_exposure_rules():
    rec = Path("r")
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_exposure(ServerConfig(rec, host=host))
    with pytest.raises(VeilError, match="not loopback"):
        check_exposure(ServerConfig(rec, host="192.168.1.5", credentials=Path("c")))
    check_exposure(ServerConfig(rec, host="0.0.0.0", insecure_public=True))
    check_exposure(ServerConfig(rec, host="0.0.0.0", credentials=Path("c"), tls_cert=Path("a"), tls_key=Path("b")))
    with pytest.raises(VeilError, match="both --tls-cert and --tls-key"):
        check_exposure(ServerConfig(rec, tls_cert=Path("a")))


def test_tls_key_readable_by_others_is_refused(tiny_models, tls, tmp_path):
    cert, key = tls
    loose = tmp_path / "loose.key"
    shutil.copy(key, loose)
    loose.chmod(0o644)
    err = run_server_expecting_failure(server_command(tiny_models["recnet"], tmp_path / "g", free_port(),
                                                      extra=("--tls-cert", str(cert), "--tls-key", str(loose))))
    assert f"chmod 600 {loose}" in err.replace("\n", "")


def test_tls_and_credentials_end_to_end(hardened, tiny_models, issued, tls):
    cert, _ = tls
    with ServiceClient(hardened.url, token=issued.token("boss"), ca=cert) as boss:
        assert boss.enrol("alice", feats(tiny_models, 1, 1))["gallery"] == 1
        assert boss.identify(feats(tiny_models, 1, 1))[0]["name"] == "alice"
        assert [r["name"] for r in boss.gallery()] == ["alice"]
    with ServiceClient(hardened.url, token=issued.token("kiosk"), ca=cert) as kiosk:
        with pytest.raises(VeilError, match="403"):
            kiosk.enrol("alice", feats(tiny_models, 1, 2))
    with ServiceClient(hardened.url, ca=cert) as nobody, pytest.raises(VeilError, match="401"):
        nobody.identify(feats(tiny_models))
    with ServiceClient(hardened.url, token=issued.token("kiosk")) as unverified:
        with pytest.raises(VeilError, match="cannot reach"):  # self-signed: not trusted without --ca
            unverified.identify(feats(tiny_models))
    with pytest.raises(httpx.HTTPError):
        httpx.get(hardened.url.replace("https://", "http://") + "/health", timeout=5)


def test_client_refuses_to_send_a_token_in_clear_off_loopback():
    with pytest.raises(VeilError, match="in clear"):
        ServiceClient("http://192.0.2.1:8000", token="kiosk.secret")


def test_client_cli_with_token_file_and_ca(hardened, tiny_models, issued, tls, tmp_path):
    cert, _ = tls
    img = write_images(tmp_path / "p", synthetic_faces(1, 1, 32, seed=4).images, "carol")
    # SYNTHETIC 32 px faces have no detectable face: the client is told they are already chips
    common = ["--fg", str(tiny_models["fg"]), "--server", hardened.url, "--ca", str(cert), "--align", "none"]
    r = CliRunner().invoke(client_app, ["enrol", str(img[0]), "--name", "carol", *common,
                                        "--token-file", str(issued.tokens["registrar"])])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(client_app, ["identify", str(img[0]), *common, "--token-file", str(issued.tokens["kiosk"])])
    assert r.exit_code == 0 and "\tcarol\t" in r.output, r.output
    r = CliRunner().invoke(client_app, ["delete", "carol", "--server", hardened.url, "--ca", str(cert),
                                        "--token-file", str(issued.tokens["kiosk"])])
    assert r.exit_code == 2 and "403" in r.output
    issued.tokens["kiosk"].chmod(0o644)
    try:
        r = CliRunner().invoke(client_app, ["identify", str(img[0]), *common, "--token-file",
                                            str(issued.tokens["kiosk"])])
        assert r.exit_code == 2 and "chmod 600" in r.output
    finally:
        issued.tokens["kiosk"].chmod(0o600)


def tls_socket(server, cert: Path) -> ssl.SSLSocket:
    ctx = ssl_verify(str(cert))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def test_half_sent_requests_are_closed_and_health_still_answers(hardened, tls):
    """Finding 3: half-sent requests were held open forever. With a 1 s header deadline they are closed."""
    cert, _ = tls
    socks = [tls_socket(hardened, cert) for _ in range(8)]
    for i, s in enumerate(socks):
        s.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GE")
    time.sleep(0.5)
    socks[0].sendall(b"T /hea")  # trickling bytes does not extend the deadline
    assert all(closed_by_server(s, 5.0) for s in socks)
    for s in socks:
        s.close()
    assert httpx.get(hardened.url + "/health", verify=ssl_verify(str(cert)), timeout=5).status_code == 200


def test_slow_body_gets_408(hardened, issued, tls):
    cert, _ = tls
    with tls_socket(hardened, cert) as s:
        s.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + issued.token("kiosk").encode()
                  + b"\r\nContent-Length: 1000\r\n\r\n" + b"\0" * 10)
        s.settimeout(10)
        reply = s.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408"), reply


def test_connection_cap_closes_before_the_handshake(hardened, tls):
    """Over the cap a TLS connection is closed at accept (issue 24: the cap now applies before the handshake)."""
    cert, _ = tls
    idle = [tls_socket(hardened, cert) for _ in range(12)]
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(hardened.url + "/health", verify=ssl_verify(str(cert)), timeout=5)
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(hardened.url + "/health", verify=ssl_verify(str(cert)), timeout=5).status_code == 200
