"""The real server process over HTTP on loopback: enrol, identify, bad input of every kind, restart."""

from __future__ import annotations

import socket

import httpx
import pytest
import torch
from safetensors.torch import save as st_save

from veil.serve.protocol import encode

from .conftest import MAX_BODY


def feats(tiny: dict, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, tiny["tokens"], tiny["dim"], generator=torch.Generator().manual_seed(seed))


def post(server, path: str, body: bytes, **params) -> httpx.Response:
    return httpx.post(server.url + path, content=body, params=params or None, timeout=30)


def assert_one_line_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    reason = r.json()["error"]
    assert reason and "\n" not in reason
    return reason


def test_health_reports_the_model_shape(server, tiny_models):
    h = httpx.get(server.url + "/health").json()
    assert (h["status"], h["tokens"], h["dim"], h["max_body"]) == ("ok", tiny_models["tokens"], tiny_models["dim"],
                                                                  MAX_BODY)


def test_enrol_then_identify_names_the_right_person(server, tiny_models):
    alice, bob = feats(tiny_models, 1, 1), feats(tiny_models, 1, 2)
    assert post(server, "/v1/enrol", encode(alice), name="alice").json()["enrolled"] == 1
    assert post(server, "/v1/enrol", encode(bob), name="bob").status_code == 200
    r = post(server, "/v1/identify", encode(torch.cat([bob, alice, bob])))
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["results"]] == ["bob", "alice", "bob"]
    assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("body,status,word", [
    (b"", 400, "empty"),
    (b"\x00" * 8 + b"not safetensors at all", 400, "safetensors"),
    (b"\xff" * 300, 400, "safetensors"),
])
def test_malformed_bodies_get_400(server, body, status, word):
    assert word in assert_one_line_error(post(server, "/v1/identify", body), status)


def test_wrong_dtype_shape_keys_values_get_422(server, tiny_models):
    n, d = tiny_models["tokens"], tiny_models["dim"]
    cases = {
        "float32": st_save({"features": torch.zeros(1, n, d, dtype=torch.float64)}),
        "shape": st_save({"features": torch.zeros(1, n + 1, d)}),
        "unexpected": st_save({"features": torch.zeros(1, n, d), "weights": torch.zeros(1)}),
        "missing": st_save({}),
        "batch": st_save({"features": torch.zeros(17, n, d)}),
        "NaN": st_save({"features": torch.full((1, n, d), float("nan"))}),
        "differs": st_save({"features": torch.zeros(2, n, d), "flipped": torch.zeros(1, n, d)}),
    }
    for word, body in cases.items():
        assert word in assert_one_line_error(post(server, "/v1/identify", body), 422), word
    assert "name" in assert_one_line_error(post(server, "/v1/enrol", encode(feats(tiny_models)), name="a/../b"), 422)
    assert assert_one_line_error(post(server, "/v1/enrol", encode(feats(tiny_models))), 422)


def test_truncated_body_gets_400_and_server_survives(server, tiny_models):
    body = encode(feats(tiny_models, 4))
    for cut in (len(body) // 2, len(body) - 1, 9):
        assert "safetensors" in assert_one_line_error(post(server, "/v1/identify", body[:cut]), 400)
    assert httpx.get(server.url + "/health").status_code == 200


def test_oversized_body_refused_from_its_declared_length_before_it_is_read(server):
    """Declare 1 GB and send nothing more: only a server that refuses before reading answers at once."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"\0" * 1024)
        data = b""
        try:
            while b"exceeds" not in data:  # the answer may arrive in pieces; the server then closes
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        reply = data.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "exceeds the limit" in reply


def test_oversized_streamed_body_without_length_refused(server):
    def chunks():
        for _ in range(64):
            yield b"\0" * (64 * 1024)  # 4 MiB in all, limit is 512 KiB

    try:
        r = httpx.post(server.url + "/v1/identify", content=chunks(), timeout=30)
    except httpx.HTTPError:  # the server may close the socket while we are still sending: also a refusal
        r = None
    if r is not None:
        assert_one_line_error(r, 413)
    assert httpx.get(server.url + "/health").status_code == 200


def test_restart_keeps_the_gallery(server, tiny_models):
    carol = feats(tiny_models, 2, 7)
    before = post(server, "/v1/enrol", encode(carol), name="carol").json()["gallery"]
    assert post(server, "/v1/enrol", encode(feats(tiny_models, 1, 8)), name="dave").json()["gallery"] == before + 1
    server.restart()
    assert server.gallery.exists() and not server.gallery.with_name(server.gallery.name + ".tmp").exists()
    assert httpx.get(server.url + "/health").json()["gallery"] == before + 1
    names = [x["name"] for x in post(server, "/v1/identify", encode(carol[1:])).json()["results"]]
    assert names == ["carol"]
