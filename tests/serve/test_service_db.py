"""The service on its database, end to end: look-alike names refused over HTTP (issue 24 item 2), revoke and
rotate acting on the next request, two server processes on one gallery, a full disk answered 503, the
one-command migration and clients kept in the database (issue 25). SYNTHETIC features, tiny models."""

from __future__ import annotations

import resource
import subprocess

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as st_save
from typer.testing import CliRunner

from veil.cli.serve import credentials_app, gallery_app
from veil.serve.app import create_app, file_digest
from veil.serve.auth import Credentials, FileCredentials
from veil.serve.gallery import Gallery
from veil.serve.protocol import CONTENT_TYPE, encode

from .conftest import SERVER_ENV, free_port, issue_credentials, server_command, start_server
from .test_auth import call, feats
from .test_gallery_db import LOOKALIKES


def post(url: str, path: str, body: bytes, token: str | None = None, **params) -> httpx.Response:
    headers = {"Content-Type": CONTENT_TYPE, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(url + path, content=body, params=params or None, headers=headers, timeout=30)


def test_lookalike_names_are_refused_over_http_and_the_rule_is_in_the_schema(tiny_models, tmp_path):
    """Issue 24 item 2: a client with only enrol enrolled pеrson0, Person0, 'person0 ', person0., full width: all
    200 (and was then answered pеrson0 for its own face)."""
    issued = issue_credentials(tmp_path)
    app = create_app(tiny_models["recnet"], tmp_path / "g.db", credentials=Credentials.load(issued.file))
    with TestClient(app) as client:
        owner, attacker = issued.token("registrar"), issued.token("registrar2")
        assert call(client, "POST", "/v1/enrol", owner, encode(feats(tiny_models, 1, 1)), name="person0").status_code \
            == 200
        accepted = [n for n in LOOKALIKES
                    if call(client, "POST", "/v1/enrol", attacker, encode(feats(tiny_models, 1, 9)), name=n)
                    .status_code != 403]
        assert accepted == []
        r = call(client, "POST", "/v1/enrol", owner, encode(feats(tiny_models, 1, 2)), name="Person0")
        assert r.status_code == 200 and r.json()["name"] == "person0"
        answer = call(client, "POST", "/v1/identify", issued.token("kiosk"), encode(feats(tiny_models, 1, 9)))
        assert answer.json()["results"][0]["name"] == "person0" and len(app.state.gallery) == 2
        schema = client.get("/openapi.json").json()
        assert "TS #39" in schema["info"]["description"] and "Cyrillic" in schema["info"]["description"]
        for bad in ("bob\u200d", "a\tb", "...", "x" * 101):
            assert call(client, "POST", "/v1/enrol", owner, encode(feats(tiny_models)), name=bad).status_code == 422
    app.state.gallery.close()


def test_revoke_and_rotate_in_the_credentials_file_act_on_the_next_request(tiny_models, tmp_path):
    """Issue 25: a revoked token still answered 200 after 75 s (the file was read at start only)."""
    issued = issue_credentials(tmp_path)
    app = create_app(tiny_models["recnet"], tmp_path / "g.db", credentials=FileCredentials(issued.file))
    body = encode(feats(tiny_models))
    with TestClient(app) as client:
        assert call(client, "POST", "/v1/identify", issued.token("kiosk"), body).status_code == 200
        runner = CliRunner()
        r = runner.invoke(credentials_app, ["revoke", "kiosk", "--file", str(issued.file)])
        assert r.exit_code == 0, r.output
        assert call(client, "POST", "/v1/identify", issued.token("kiosk"), body).status_code == 401
        old = issued.token("boss")
        r = runner.invoke(credentials_app, ["add", "boss", "--rights", "identify", "--replace", "--file",
                                            str(issued.file), "--token-out", str(tmp_path / "boss2.token")])
        assert r.exit_code == 0, r.output
        assert call(client, "POST", "/v1/identify", old, body).status_code == 401
        new = (tmp_path / "boss2.token").read_text().strip()
        assert call(client, "POST", "/v1/identify", new, body).status_code == 200
    app.state.gallery.close()


def test_clients_in_the_database_revoke_on_the_next_request(tiny_models, gallery_target, tmp_path):
    """Credentials in the gallery database: the server is open until the first client, then each change is live."""
    server = start_server(tiny_models["recnet"], gallery_target)  # type: ignore[arg-type]
    body = encode(feats(tiny_models))
    runner = CliRunner()
    try:
        assert post(server.url, "/v1/identify", body).status_code == 200  # open: no client yet
        r = runner.invoke(credentials_app, ["add", "kiosk", "--rights", "identify", "--gallery", gallery_target,
                                            "--token-out", str(tmp_path / "k.token")])
        assert r.exit_code == 0, r.output
        token = (tmp_path / "k.token").read_text().strip()
        assert post(server.url, "/v1/identify", body).status_code == 401  # a client exists: tokens needed
        assert post(server.url, "/v1/identify", body, token).status_code == 200
        r = runner.invoke(credentials_app, ["list", "--gallery", gallery_target])
        assert "kiosk" in r.output and token.split(".")[1] not in r.output
        r = runner.invoke(credentials_app, ["revoke", "kiosk", "--gallery", gallery_target])
        assert r.exit_code == 0, r.output
        assert post(server.url, "/v1/identify", body, token).status_code == 401  # the very next request
        assert post(server.url, "/v1/identify", body).status_code == 401  # revoking the last one does not open it
    finally:
        server.stop()


def test_two_server_processes_share_one_gallery(tiny_models, gallery_target):
    """Every enrol made through one worker is identified through the other, on its next request."""
    one = start_server(tiny_models["recnet"], gallery_target)  # type: ignore[arg-type]
    two = start_server(tiny_models["recnet"], gallery_target)  # type: ignore[arg-type]
    try:
        for i in range(6):
            through, other = (one, two) if i % 2 == 0 else (two, one)
            assert post(through.url, "/v1/enrol", encode(feats(tiny_models, 1, 100 + i)), name=f"p{i}").status_code \
                == 200
            answer = post(other.url, "/v1/identify", encode(feats(tiny_models, 1, 100 + i))).json()
            assert answer["results"][0]["name"] == f"p{i}" and answer["gallery"] == i + 1
    finally:
        one.stop()
        two.stop()


def test_a_full_disk_is_a_503_naming_the_cause_and_nothing_acknowledged_is_lost(tiny_models, tmp_path):
    """RLIMIT_FSIZE on the server process: its writes fail as on a full disk; identify goes on."""
    gallery = tmp_path / "g.db"
    port = free_port()
    limit = 160 * 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(server_command(tiny_models["recnet"], gallery, port), env=SERVER_ENV, preexec_fn=cap,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                import time

                time.sleep(0.2)
        acknowledged, refusal = [], None
        for i in range(400):
            r = post(url, "/v1/enrol", encode(feats(tiny_models, 16, i)), name=f"p{i}")
            if r.status_code == 200:
                acknowledged.append(f"p{i}")
            else:
                refusal = r
                break
        assert refusal is not None, "the size limit was never reached"
        assert refusal.status_code == 503 and refusal.headers["Retry-After"]
        reason = refusal.json()["error"]
        assert reason.startswith("gallery database unavailable: ") and reason.endswith("nothing was stored")
        assert any(c in reason for c in ("disk full", "disk I/O error", "file size limit")), reason
        assert len(acknowledged) >= 1
        r = post(url, "/v1/identify", encode(feats(tiny_models, 1, 0)))
        assert r.status_code == 200 and r.json()["results"][0]["name"] == "p0"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    g = Gallery(gallery, 16, file_digest(tiny_models["recnet"]))
    assert {row["name"] for row in g.listing()} == set(acknowledged)
    g.close()


def test_migrate_an_old_safetensors_gallery_in_one_command(tiny_models, tmp_path):
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(5, 16), dim=1)  # SYNTHETIC rows
    emb[4] = float("nan")  # stored by a server older than the finiteness check
    names = ["alice", "alice", "bob", "Bob.", "carol"]
    old = tmp_path / "old.safetensors"
    import json

    old.write_bytes(st_save({"embeddings": emb}, metadata={
        "format": "veil-gallery", "recnet": file_digest(tiny_models["recnet"]), "names": json.dumps(names),
        "owners": json.dumps({"alice": "c1", "bob": None, "Bob.": "c2", "carol": "c3"})}))
    r = CliRunner().invoke(gallery_app, ["migrate", str(old), str(tmp_path / "new.db"), "--recnet",
                                         str(tiny_models["recnet"])])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps long lines
    assert "4 entries of 2 name(s)" in said and "1 non-finite" in said and "Bob. -> bob" in said
    g = Gallery(tmp_path / "new.db", 16, file_digest(tiny_models["recnet"]))
    assert g.listing() == [{"name": "alice", "entries": 2, "enrolled_by": "c1"},
                           {"name": "bob", "entries": 2, "enrolled_by": None}]
    assert torch.allclose(g.embeddings, emb[:4], atol=1e-6)
    g.close()
    again = CliRunner().invoke(gallery_app, ["migrate", str(old), str(tmp_path / "new.db"), "--recnet",
                                             str(tiny_models["recnet"])])
    assert again.exit_code != 0 and "already holds 4 entries" in " ".join(again.output.split())


def test_server_refuses_an_unreachable_postgres_url_with_one_line(tiny_models, tmp_path):
    url = f"postgresql://veil@/nodb?host={tmp_path}"
    proc = subprocess.run(server_command(tiny_models["recnet"], url, free_port()),  # type: ignore[arg-type]
                          env=SERVER_ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot connect to the gallery database" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["alice"])
def test_delete_by_a_lookalike_removes_the_enrolled_name(tiny_models, tmp_path, name):
    issued = issue_credentials(tmp_path)
    app = create_app(tiny_models["recnet"], tmp_path / "g.db", credentials=Credentials.load(issued.file))
    with TestClient(app) as client:
        assert call(client, "POST", "/v1/enrol", issued.token("boss"), encode(feats(tiny_models)), name=name)\
            .status_code == 200
        r = client.delete("/v1/gallery/ALICE ", headers={"Authorization": f"Bearer {issued.token('boss')}"})
        assert r.status_code == 200 and r.json()["deleted"] == 1 and len(app.state.gallery) == 0
    app.state.gallery.close()
