"""Issue 12, findings 2 and 3, in process (the app without a socket): rights, impersonation, poisoning, schema.

Each test names the reported failure it reproduces: before the fix the service had no credentials
(anyone enrolled under an existing name and was then identified as that person), stored NaN
embeddings from finite but huge features, dropped 405's ``Allow``, served no schema and let a name
with a trailing newline through.
"""

from __future__ import annotations

import json
import stat

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as st_save

from veil.serve.app import create_app
from veil.serve.auth import Credentials
from veil.serve.gallery import Gallery
from veil.serve.protocol import CONTENT_TYPE, encode

from .conftest import issue_credentials


def feats(tiny: dict, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, tiny["tokens"], tiny["dim"], generator=torch.Generator().manual_seed(seed))


@pytest.fixture()
def issued(tmp_path):
    return issue_credentials(tmp_path)


@pytest.fixture()
def app_with_auth(tiny_models, issued, tmp_path):
    app = create_app(tiny_models["recnet"], tmp_path / "gallery.db",
                     credentials=Credentials.load(issued.file))
    with TestClient(app) as client:
        yield client, issued, app
    app.state.gallery.close()


@pytest.fixture()
def open_app(tiny_models, tmp_path):
    app = create_app(tiny_models["recnet"], tmp_path / "gallery.db")
    with TestClient(app) as client:
        yield client, app
    app.state.gallery.close()


def call(client, method: str, path: str, token: str | None = None, body: bytes | None = None, **params):
    headers = {"Content-Type": CONTENT_TYPE}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.request(method, path, content=body, params=params or None, headers=headers)


def test_no_or_unknown_credential_is_401(app_with_auth, tiny_models):
    client, issued, _ = app_with_auth
    r = call(client, "POST", "/v1/identify", None, encode(feats(tiny_models)))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "credential" in r.json()["error"]
    forged = issued.token("boss").split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    for token in (forged, "boss", "nobody.secret", issued.token("kiosk") + "x"):
        assert call(client, "POST", "/v1/identify", token, encode(feats(tiny_models))).status_code == 401, token


def test_each_right_is_needed_and_enough(app_with_auth, tiny_models):
    client, issued, _ = app_with_auth
    body = encode(feats(tiny_models, 1, 1))
    assert call(client, "POST", "/v1/enrol", issued.token("kiosk"), body, name="alice").status_code == 403
    assert call(client, "POST", "/v1/enrol", issued.token("registrar"), body, name="alice").status_code == 200
    assert call(client, "POST", "/v1/identify", issued.token("registrar"), body).status_code == 403
    r = call(client, "POST", "/v1/identify", issued.token("kiosk"), body)
    assert r.status_code == 200 and r.json()["results"][0]["name"] == "alice"
    for who in ("kiosk", "registrar"):
        assert call(client, "GET", "/v1/gallery", issued.token(who)).status_code == 403
        assert call(client, "DELETE", "/v1/gallery/alice", issued.token(who)).status_code == 403


def test_enrolling_under_someone_elses_name_needs_admin(app_with_auth, tiny_models):
    """Finding 3: a client enrolled its own face as an existing person and was then identified as them."""
    client, issued, _ = app_with_auth
    alice, mallory = feats(tiny_models, 1, 1), feats(tiny_models, 1, 2)
    assert call(client, "POST", "/v1/enrol", issued.token("registrar"), encode(alice), name="alice").status_code == 200
    r = call(client, "POST", "/v1/enrol", issued.token("registrar2"), encode(mallory), name="alice")
    assert r.status_code == 403 and "admin" in r.json()["error"]
    probe = call(client, "POST", "/v1/identify", issued.token("kiosk"), encode(mallory)).json()["results"][0]
    assert probe["score"] < 0.99  # mallory's own face is not in the gallery under alice's name
    # the client that enrolled a name may add to it; an admin may add to any
    assert call(client, "POST", "/v1/enrol", issued.token("registrar"), encode(alice), name="alice").status_code == 200
    assert call(client, "POST", "/v1/enrol", issued.token("boss"), encode(alice), name="alice").status_code == 200


def test_admin_lists_and_deletes(app_with_auth, tiny_models):
    client, issued, _ = app_with_auth
    boss = issued.token("boss")
    for name, seed in (("alice", 1), ("bob", 2), ("alice", 3)):
        r = call(client, "POST", "/v1/enrol", boss, encode(feats(tiny_models, 1, seed)), name=name)
        assert r.status_code == 200
    rows = {r["name"]: r for r in call(client, "GET", "/v1/gallery", boss).json()["names"]}
    assert rows["alice"]["entries"] == 2 and rows["bob"]["enrolled_by"] == "boss"
    r = call(client, "DELETE", "/v1/gallery/alice", boss)
    assert r.status_code == 200 and r.json() == {"deleted": 2, "name": "alice", "gallery": 1}
    assert call(client, "DELETE", "/v1/gallery/alice", boss).status_code == 404
    got = call(client, "POST", "/v1/identify", boss, encode(feats(tiny_models, 1, 1))).json()["results"]
    assert got[0]["name"] == "bob"


def test_open_mode_cannot_overwrite_list_or_delete(open_app, tiny_models):
    client, _ = open_app
    assert call(client, "POST", "/v1/enrol", None, encode(feats(tiny_models, 1, 1)), name="alice").status_code == 200
    assert call(client, "POST", "/v1/enrol", None, encode(feats(tiny_models, 1, 2)), name="alice").status_code == 403
    assert call(client, "GET", "/v1/gallery").status_code == 403
    assert call(client, "DELETE", "/v1/gallery/alice").status_code == 403
    assert call(client, "POST", "/v1/identify", None, encode(feats(tiny_models))).status_code == 200


@pytest.mark.parametrize("value", [3e38, -3e38, 1e21, 1e5])
def test_huge_finite_features_are_refused_and_nothing_is_stored(open_app, tiny_models, value):
    """Finding 2: one element at 3e38 passed the finiteness check and stored a NaN embedding forever."""
    client, app = open_app
    assert call(client, "POST", "/v1/enrol", None, encode(feats(tiny_models, 1, 1)), name="alice").status_code == 200
    bad = feats(tiny_models, 2, 5)
    bad[0, 0, 0] = value
    r = call(client, "POST", "/v1/enrol", None, encode(bad), name="mallory")
    assert r.status_code == 422 and "bound" in r.json()["error"]
    assert len(app.state.gallery) == 1 and "mallory" not in app.state.gallery
    score = call(client, "POST", "/v1/identify", None, encode(feats(tiny_models, 1, 1))).json()["results"][0]
    assert score["name"] == "alice" and score["score"] == pytest.approx(1.0, abs=1e-4)


def test_non_finite_embedding_is_refused_after_the_model(tiny_models, tmp_path):
    """With the input bound lifted, the check after the model still stores nothing."""
    app = create_app(tiny_models["recnet"], tmp_path / "g.db", max_abs=float("inf"))
    with TestClient(app) as client:
        bad = feats(tiny_models, 1, 5)
        bad[0, 0, 0] = 3e38
        r = call(client, "POST", "/v1/enrol", None, encode(bad), name="mallory")
        assert r.status_code == 422 and "non-finite embedding" in r.json()["error"]
        assert len(app.state.gallery) == 0
    app.state.gallery.close()


def test_gallery_refuses_non_finite_and_stores_nothing(tmp_path):
    g = Gallery(tmp_path / "g.db", 4, "digest")
    with pytest.raises(ValueError, match="non-finite"):
        g.enrol("x", torch.tensor([[float("nan"), 0, 0, 0]]))
    g.enrol("alice", torch.tensor([[1.0, 0, 0, 0]]))
    assert g.identify(torch.tensor([[1.0, 0.1, 0, 0]]))[0]["name"] == "alice"
    assert g.listing() == [{"name": "alice", "entries": 1, "enrolled_by": None}]
    g.close()


def test_gallery_database_is_private_and_shared_by_two_servers(tmp_path):
    """Finding 3 of issue 12: the gallery was written 0644. Issue 25: two servers on one gallery now share it
    (the lock file is gone): an enrol through one is identified through the other."""
    g = Gallery(tmp_path / "g.db", 4, "digest")
    g.enrol("alice", torch.tensor([[1.0, 0, 0, 0]]))
    assert stat.S_IMODE((tmp_path / "g.db").stat().st_mode) == 0o600
    other = Gallery(tmp_path / "g.db", 4, "digest")
    other.enrol("bob", torch.tensor([[0.0, 1, 0, 0]]))
    assert g.identify(torch.tensor([[0.0, 1, 0, 0]]))[0]["name"] == "bob"
    assert other.names == ["alice", "bob"] and other.owners("alice") == [None]
    g.close()
    other.close()


def test_405_names_the_allowed_methods(open_app):
    client, _ = open_app
    for method, path, allowed in (("GET", "/v1/enrol", "POST"), ("PUT", "/v1/identify", "POST"),
                                  ("POST", "/health", "GET")):
        r = client.request(method, path)
        assert r.status_code == 405 and allowed in r.headers.get("allow", ""), (method, path, r.headers)
        assert r.json()["error"]


def test_openapi_schema_describes_the_binary_body_and_bearer_auth(open_app):
    client, _ = open_app
    schema = client.get("/openapi.json").json()
    for path in ("/v1/enrol", "/v1/identify"):
        body = schema["paths"][path]["post"]["requestBody"]["content"][CONTENT_TYPE]["schema"]
        assert body == {"type": "string", "format": "binary"}
    assert schema["paths"]["/v1/enrol"]["post"]["security"]
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    assert {"get", "delete"} <= set(schema["paths"]["/v1/gallery"]) | set(schema["paths"]["/v1/gallery/{name}"])


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "a/../b", "", "x" * 101, "bob\x00"])
def test_bad_names_are_refused(open_app, tiny_models, name):
    """Finding 3: ``$`` let a trailing newline through the name rule."""
    client, app = open_app
    r = call(client, "POST", "/v1/enrol", None, encode(feats(tiny_models)), name=name)
    assert r.status_code == 422 and "\n" not in r.json()["error"]
    assert len(app.state.gallery) == 0


def test_credentials_file_round_trip_and_refusals(tmp_path):
    creds = Credentials()
    token = creds.add("kiosk", frozenset({"identify"}))
    creds.save(tmp_path / "c.json")
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600
    assert token.split(".", 1)[1] not in (tmp_path / "c.json").read_text()  # only the hash is kept
    back = Credentials.load(tmp_path / "c.json")
    assert back.authenticate(token).rights == frozenset({"identify"})
    back.revoke("kiosk")
    assert back.authenticate(token) is None
    (tmp_path / "c.json").chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        Credentials.load(tmp_path / "c.json")
    bad = tmp_path / "bad.json"
    entry = {"rights": ["x"], "sha256": "0" * 64}
    bad.write_text(json.dumps({"format": "veil-serve-credentials", "version": 1, "clients": {"k": entry}}))
    bad.chmod(0o600)
    with pytest.raises(Exception, match="not a valid credentials file"):
        Credentials.load(bad)


def test_wrong_dtype_body_is_still_422_with_auth(app_with_auth, tiny_models):
    client, issued, _ = app_with_auth
    body = st_save({"features": torch.zeros(1, tiny_models["tokens"], tiny_models["dim"], dtype=torch.float64)})
    assert call(client, "POST", "/v1/identify", issued.token("kiosk"), body).status_code == 422
