"""The trusted recognition server: FastAPI over the distilled RecNet and a persistent gallery.

Endpoints (bodies are safetensors, see :mod:`veil.serve.protocol`; answers are JSON):
- ``GET  /health``: model shape, limits, gallery size.
- ``POST /v1/enrol?name=NAME``: embed the features, add them to the gallery under NAME, persist.
- ``POST /v1/identify``: embed the features, return the nearest enrolled name and its cosine score.

A body over ``max_body`` bytes is refused with 413 from its Content-Length before any of it is read,
and, when no length is declared, as soon as the streamed bytes pass the limit. Every bad input gets
a 4xx with ``{"error": "<one line>"}``; an unexpected failure gets a 500 and the server keeps serving.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from veil.models.recnet import load_recnet
from veil.serve.gallery import Gallery
from veil.serve.protocol import BadRequest, decode

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_BATCH = 64
NAME_RE = re.compile(r"^[\w .'@+-]{1,100}$")


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` (declared length first, then streamed bytes)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(400, f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise BadRequest(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf.extend(chunk)
            if len(buf) > limit:
                raise BadRequest(413, f"body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        raise BadRequest(400, "client disconnected before the body was complete") from None
    return bytes(buf)


def _error(status: int, reason: str) -> JSONResponse:
    headers = {"Connection": "close"} if status == 413 else None
    return JSONResponse({"error": reason.replace("\n", " ")}, status_code=status, headers=headers)


def create_app(recnet_path: str | Path, gallery_path: str | Path, max_body: int = DEFAULT_MAX_BODY,
               max_batch: int = DEFAULT_MAX_BATCH, threads: int = 1) -> FastAPI:
    """Load RecNet (safetensors + JSON metadata only) and the gallery; return the ASGI app."""
    torch.set_num_threads(max(1, threads))
    recnet, info = load_recnet(recnet_path)
    recnet.requires_grad_(False)
    digest = file_digest(recnet_path)
    tokens, dim = recnet.cfg.in_tokens, recnet.cfg.in_dim
    gallery = Gallery(gallery_path, recnet.cfg.emb_dim, digest)
    app = FastAPI(title="Veil XNN-d recognition server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return _error(exc.status, exc.reason)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__})")

    @torch.no_grad()
    def embed(features: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
        emb = recnet(features)
        return emb + recnet(flipped) if flipped is not None else emb

    async def features_of(request: Request) -> tuple[torch.Tensor, torch.Tensor | None]:
        body = await read_capped(request, max_body)
        return decode(body, tokens, dim, max_batch)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "tokens": tokens, "dim": dim, "emb_dim": recnet.cfg.emb_dim, "recnet": digest,
                "role": (info.get("xnnd") or {}).get("role"), "gallery": len(gallery), "max_body": max_body,
                "max_batch": max_batch}

    @app.post("/v1/enrol")
    async def enrol(request: Request, name: str) -> dict:
        if not NAME_RE.match(name):
            raise BadRequest(422, "name must be 1-100 letters, digits, spaces or . ' @ + - _")
        features, flipped = await features_of(request)
        emb = await run_in_threadpool(embed, features, flipped)
        size = await run_in_threadpool(gallery.enrol, name, emb)
        return {"enrolled": len(emb), "name": name, "gallery": size}

    @app.post("/v1/identify")
    async def identify(request: Request) -> dict:
        features, flipped = await features_of(request)
        emb = await run_in_threadpool(embed, features, flipped)
        return {"results": gallery.identify(emb), "gallery": len(gallery)}

    return app


def run_server(recnet_path: str | Path, gallery_path: str | Path, host: str = "127.0.0.1", port: int = 8000,
               max_body: int = DEFAULT_MAX_BODY, max_batch: int = DEFAULT_MAX_BATCH, threads: int = 1) -> None:
    """Build the app and serve it with uvicorn until stopped; what ``veil serve`` and ``python -m veil.serve`` run."""
    import uvicorn

    app = create_app(recnet_path, gallery_path, max_body, max_batch, threads)
    print(f"veil serve: {recnet_path} on http://{host}:{port} (gallery {gallery_path})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
