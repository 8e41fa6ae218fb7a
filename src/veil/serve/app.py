"""The trusted recognition server: FastAPI over the distilled RecNet and a persistent gallery.

Endpoints (bodies are safetensors, see :mod:`veil.serve.protocol`; answers are JSON; the schema is
served at ``/openapi.json``):

- ``GET  /health``: model shape, limits, gallery size (no credential needed).
- ``POST /v1/identify``: embed the features, return the nearest enrolled name and its cosine (right ``identify``).
- ``POST /v1/enrol?name=NAME``: embed the features, add them under NAME in one committed transaction
  (right ``enrol``; a name enrolled by another client, or a look-alike of it, needs ``admin``:
  :mod:`veil.serve.names`).
- ``GET  /v1/gallery``: names, entry counts, who enrolled each (right ``admin``).
- ``DELETE /v1/gallery/{name}``: remove a name (right ``admin``).

Credentials and rights: :mod:`veil.serve.auth`. A body over ``max_body`` bytes is refused with 413
from its Content-Length before any of it is read, and, when no length is declared, as soon as the
streamed bytes pass the limit; a body that does not arrive within ``body_timeout`` seconds gets 408.
Every bad input gets a 4xx with ``{"error": "<one line>"}``; a database that cannot take a write
(disk full, read-only, connection lost) gets a 503 naming the cause while identify goes on from
memory; an unexpected failure gets a 500 and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from veil.models.recnet import load_recnet
from veil.serve.auth import ANONYMOUS, Credentials, DatabaseCredentials, FileCredentials, Principal
from veil.serve.config import DEFAULT_MAX_ABS, DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY, ServerConfig, check_exposure
from veil.serve.embedder import Embedder
from veil.serve.gallery import Gallery
from veil.serve.names import NAME_RULE, BadName, canonical, skeletons
from veil.serve.protocol import CONTENT_TYPE, BadRequest, decode
from veil.serve.store import GalleryUnavailable, NameOwned
from veil.serve.throttle import AuthThrottle


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


async def read_capped(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit``, or 408 when it takes over ``timeout`` s.

    The deadline covers the whole body, so a client trickling a byte at a time cannot hold the
    connection open either.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(400, f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise BadRequest(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    buf = bytearray()
    deadline = time.monotonic() + timeout
    stream = request.stream().__aiter__()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), remaining)
            except StopAsyncIteration:
                break
            buf.extend(chunk)
            if len(buf) > limit:
                raise BadRequest(413, f"body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        raise BadRequest(400, "client disconnected before the body was complete") from None
    except asyncio.TimeoutError:
        raise BadRequest(408, f"body not received within {timeout:g} s") from None
    return bytes(buf)


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status in (408, 413):
        headers["Connection"] = "close"
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="veil"')
    return JSONResponse({"error": reason.replace("\n", " ")}, status_code=status, headers=headers or None)


FEATURES_BODY = {
    "required": True,
    "description": "safetensors payload: 'features' float32 (B, tokens, dim), optional 'flipped' of the same shape "
                   "(features of the mirrored images; their embeddings are added). No other tensors.",
    "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}
ERRORS: dict[int | str, dict[str, Any]] = {code: {"description": what, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
    for code, what in ((400, "malformed body"), (401, "missing or unknown credential"), (403, "right missing"),
                       (408, "body too slow"), (413, "body too large"), (422, "well-formed but invalid input"),
                       (429, "too many failed authentications from this address (see Retry-After)"),
                       (503, "the gallery database cannot take the change now (the reason names the cause: disk "
                             "full, read-only database, lost connection); nothing was stored"))}


def create_app(recnet_path: str | Path, gallery_path: str | Path, max_body: int = DEFAULT_MAX_BODY,
               max_batch: int = DEFAULT_MAX_BATCH, threads: int = 1, *,
               credentials: Credentials | FileCredentials | None = None,
               max_abs: float = DEFAULT_MAX_ABS, body_timeout: float = 30.0,
               throttle: AuthThrottle | None = None) -> FastAPI:
    """Load RecNet (safetensors + JSON metadata only) and the gallery database; return the ASGI app.

    ``gallery_path`` is a SQLite file or a ``postgresql://`` URL. ``credentials=None`` means the
    clients in the gallery database (:class:`DatabaseCredentials`): open mode, every caller
    ``anonymous`` with ``identify`` and ``enrol``, until the first client is added there.
    ``throttle``: failed authentications per client address (default: 20 at once, then 1 per second).
    """
    torch.set_num_threads(max(1, threads))
    recnet, info = load_recnet(recnet_path)
    recnet.requires_grad_(False)
    digest = file_digest(recnet_path)
    tokens, dim = recnet.cfg.in_tokens, recnet.cfg.in_dim
    gallery = Gallery(gallery_path, recnet.cfg.emb_dim, digest)
    skeletons(canonical("warm"))  # loads the confusables table now (0.4 s), not in the first enrol
    authority = credentials if credentials is not None else DatabaseCredentials(gallery.store)
    app = FastAPI(title="Veil XNN-d recognition server", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Bodies are safetensors feature tensors (never images, never pickles). Every call but "
                              "/health and /openapi.json needs a bearer token `CLIENT.SECRET` with the right named "
                              "in its description, unless the server runs open on loopback.\n\nNames: "
                              + NAME_RULE + ".")
    app.state.gallery = gallery
    bearer = HTTPBearer(auto_error=False, description="CLIENT.SECRET from `veil serve-credentials add`")

    guard = throttle if throttle is not None else AuthThrottle()

    def principal(request: Request, auth: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        if not authority.required:
            return ANONYMOUS
        address = request.client.host if request.client else "?"
        wait = guard.retry_after(address)
        if wait is not None:  # refused before the credential is looked at: a guess now tells nothing
            raise BadRequest(429, f"too many failed authentications from {address}; retry in {wait} s",
                             {"Retry-After": str(wait)})
        if auth is None:
            raise BadRequest(401, "this server needs a credential: send 'Authorization: Bearer CLIENT.SECRET'")
        who = authority.authenticate(auth.credentials)
        if who is None:
            guard.failed(address, auth.credentials.partition(".")[0])
            raise BadRequest(401, "unknown or revoked credential")
        return who

    def requires(right: str):
        async def check(who: Principal = Depends(principal)) -> Principal:  # no I/O: no thread hop
            if not who.can(right):
                raise BadRequest(403, f"client {who.client!r} lacks the right {right!r}")
            return who
        return check

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return _error(exc.status, exc.reason, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)  # keeps 405's Allow header

    @app.exception_handler(GalleryUnavailable)
    async def unavailable(_request: Request, exc: GalleryUnavailable) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__})")

    embedder = Embedder(recnet)  # concurrent requests share one RecNet forward (veil.serve.embedder)
    app.state.embedder = embedder

    async def features_of(request: Request) -> tuple[torch.Tensor, torch.Tensor | None]:
        body = await read_capped(request, max_body, body_timeout)
        return decode(body, tokens, dim, max_batch, max_abs)

    @app.get("/health", summary="Model shape, limits and gallery size")
    async def health() -> dict:
        return {"status": "ok", "tokens": tokens, "dim": dim, "emb_dim": recnet.cfg.emb_dim, "recnet": digest,
                "role": (info.get("xnnd") or {}).get("role"), "gallery": len(gallery), "max_body": max_body,
                "max_batch": max_batch, "max_abs": max_abs, "auth": "bearer" if authority.required else "open",
                "database": gallery.database_error or "ok"}

    def key(name: str) -> str:
        try:
            return canonical(name)
        except BadName as exc:
            raise BadRequest(422, str(exc)) from None

    @app.post("/v1/enrol", summary="Enrol feature rows under a name (right: enrol; a name, or a look-alike of a "
              "name, enrolled by another client: admin)", openapi_extra={"requestBody": FEATURES_BODY},
              responses={**ERRORS, 403: {"description": "right missing, or the name (or a look-alike: see the "
                                                        "naming rule above) belongs to another client"}})
    async def enrol(request: Request, who: Principal = Depends(requires("enrol")),
                    name: str = Query(min_length=1, max_length=400, description=NAME_RULE)) -> dict:
        name = key(name)
        client = None if who is ANONYMOUS else who.client

        def may_enrol() -> None:  # early refusal only: the enrol transaction checks again
            for owner in gallery.owners(name):
                if not who.can("admin") and (client is None or owner != client):
                    raise NameOwned(name, owner)

        def embed_and_enrol(features: torch.Tensor, flipped: torch.Tensor | None) -> tuple[str, int]:
            return gallery.enrol(name, embedder(features, flipped), client, admin=who.can("admin"))

        try:
            await run_in_threadpool(may_enrol)  # before the body is read and the model run
            features, flipped = await features_of(request)
            stored, size = await run_in_threadpool(embed_and_enrol, features, flipped)  # one thread hop for both
        except NameOwned as exc:
            raise BadRequest(403, str(exc)) from None
        except ValueError as exc:
            raise BadRequest(422, str(exc)) from None
        return {"enrolled": len(features), "name": stored, "gallery": size}

    @app.post("/v1/identify", summary="Nearest enrolled name for each feature row (right: identify)",
              openapi_extra={"requestBody": FEATURES_BODY}, responses=ERRORS)
    async def identify(request: Request, _who: Principal = Depends(requires("identify"))) -> dict:
        features, flipped = await features_of(request)
        results = await run_in_threadpool(lambda: gallery.identify(embedder(features, flipped)))
        return {"results": results, "gallery": len(gallery)}

    @app.get("/v1/gallery", summary="Enrolled names (right: admin)", responses=ERRORS)
    async def listing(_who: Principal = Depends(requires("admin"))) -> dict:
        rows = await run_in_threadpool(gallery.listing)
        return {"names": rows, "gallery": len(gallery)}

    @app.delete("/v1/gallery/{name}", summary="Delete every entry of a name (right: admin)",
                responses={**ERRORS, 404: {"description": "no such name"}})
    async def delete(name: str, _who: Principal = Depends(requires("admin"))) -> dict:
        name = key(name)
        removed = await run_in_threadpool(gallery.delete, name)
        if not removed:
            raise BadRequest(404, f"no enrolled name {name!r}")
        return {"deleted": removed, "name": name, "gallery": len(gallery)}

    return app


def run_server(cfg: ServerConfig) -> None:
    """Check the exposure, build the app and serve it with uvicorn until stopped (``veil serve``)."""
    import uvicorn

    from veil.serve import ratelog
    from veil.serve.transport import ConnectionLimits, gated_protocol, server_ssl_context, widen_listen_queue

    class Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            widen_listen_queue(getattr(self, "servers", []))

    check_exposure(cfg)  # again, for callers that did not go through the entry points
    creds = FileCredentials(cfg.credentials) if cfg.credentials is not None else None
    app = create_app(cfg.recnet, cfg.gallery, cfg.max_body, cfg.max_batch, cfg.threads, credentials=creds,
                     max_abs=cfg.max_abs, body_timeout=cfg.body_timeout,
                     throttle=AuthThrottle(cfg.auth_failures_burst, cfg.auth_failures_per_second))
    scheme = "https" if cfg.tls_cert else "http"
    authority = creds if creds is not None else DatabaseCredentials(app.state.gallery.store)
    auth = (f"credentials file {cfg.credentials}" if creds else "clients in the gallery database"
            if authority.required else "OPEN (no clients yet; loopback use only)")
    print(f"veil serve: {cfg.recnet} on {scheme}://{cfg.host}:{cfg.port} (gallery {cfg.gallery}; {auth})",
          flush=True)
    if not authority.required:
        print("veil serve: warning: any local process can identify and enrol new names; give --credentials",
              file=sys.stderr, flush=True)
    limits = ConnectionLimits(cfg.max_connections, cfg.max_connections_per_address, cfg.handshake_timeout)
    tls = server_ssl_context(cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
    # TLS is not given to uvicorn: the gate admits a connection first, then runs the handshake itself.
    # uvicorn's own cap (which answers 503 but keeps the socket) sits above the gate's, for its tasks only.
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            loop="asyncio", http=gated_protocol(limits, cfg.header_timeout, tls),  # type: ignore[arg-type]
                            limit_concurrency=cfg.max_connections + 1, timeout_keep_alive=cfg.idle_timeout,
                            backlog=limits.backlog)
    ratelog.install()
    Server(config).run()
