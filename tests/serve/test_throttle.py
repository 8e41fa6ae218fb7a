"""Issue 24, finding 3: 3,000 wrong tokens were all evaluated (663 guesses/s), no 429, no log line.

Now failures drain a per-address token bucket: once it is empty the address gets 429 with
Retry-After before its credential is looked at; a valid client elsewhere is unaffected, and each
failure is logged with the client id only.
"""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from veil.serve.app import create_app
from veil.serve.auth import Credentials
from veil.serve.throttle import AuthThrottle

from .conftest import issue_credentials


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def throttled(tiny_models, tmp_path):
    issued = issue_credentials(tmp_path)
    clock = Clock()
    app = create_app(tiny_models["recnet"], tmp_path / "gallery.safetensors", credentials=Credentials.load(issued.file),
                     throttle=AuthThrottle(burst=5, rate=0.5, clock=clock))
    attacker = TestClient(app, client=("203.0.113.7", 5000))
    other = TestClient(app, client=("198.51.100.2", 5000))
    with attacker, other:
        yield attacker, other, issued, clock
    app.state.gallery.close()


def gallery(client: TestClient, token: str):
    return client.get("/v1/gallery", headers={"Authorization": f"Bearer {token}"})


def test_guessing_gets_429_with_retry_after_and_valid_clients_are_unaffected(throttled, caplog):
    attacker, other, issued, clock = throttled
    wrong = "boss." + "A" * 43
    with caplog.at_level(logging.WARNING, logger="veil.serve"):
        codes = [gallery(attacker, wrong).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    r = gallery(attacker, issued.token("boss"))  # even the right token is not evaluated from a throttled address
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "retry in" in r.json()["error"]
    for _ in range(20):  # another address with a valid token: never throttled, however often it calls
        assert gallery(other, issued.token("boss")).status_code == 200
    clock.now += int(r.headers["Retry-After"])  # after Retry-After, the address may try again
    assert gallery(attacker, issued.token("boss")).status_code == 200
    lines = [rec.getMessage() for rec in caplog.records if "authentication failed" in rec.getMessage()]
    assert len(lines) == 5 and all("'boss'" in line and "203.0.113.7" in line for line in lines)
    secret = issued.token("boss").partition(".")[2]
    assert not any("A" * 43 in line or secret in line for line in caplog.text.splitlines())


def test_malformed_client_ids_are_not_echoed_into_the_log(throttled, caplog):
    attacker, _other, _issued, _clock = throttled
    with caplog.at_level(logging.WARNING, logger="veil.serve"):
        assert gallery(attacker, "evil\x1b[2J.secret").status_code == 401
    assert "malformed client id" in caplog.text and "\x1b" not in caplog.text


def test_bucket_refills_at_its_rate():
    clock = Clock()
    t = AuthThrottle(burst=2, rate=1.0, clock=clock)
    t.failed("a", "x")
    t.failed("a", "x")
    assert t.retry_after("a") == 1 and t.retry_after("b") is None
    clock.now = 1.0
    assert t.retry_after("a") is None
    with pytest.raises(ValueError):
        AuthThrottle(burst=0)
