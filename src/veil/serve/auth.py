"""Who may call the recognition service, and with which rights.

Each client gets its own bearer token ``CLIENT.SECRET`` (32 bytes from the OS CSPRNG, base64url).
The server keeps only a credentials file listing, per client, its rights and the SHA-256 of its
secret, so the file does not let anyone who reads it call the service; the client keeps its token
in a 0600 file (:mod:`veil.secretfile`). Tokens travel in ``Authorization: Bearer``, which is why
the server refuses to listen off loopback without TLS.

Rights (each is granted explicitly; none implies another):

- ``identify``: ask who a probe is;
- ``enrol``: add a *new* name to the gallery, or more images to a name this client enrolled;
- ``admin``: enrol under any existing name, list the gallery, delete a name.

Without a credentials file the service runs open on loopback, every caller being ``anonymous``
with ``identify`` and ``enrol`` only: enrolling under an existing name (the impersonation in
issue 12, finding 3), listing and deleting need a credential with ``admin``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from veil.errors import VeilError
from veil.secretfile import read_private, write_private

FORMAT = "veil-serve-credentials"
VERSION = 1
RIGHTS = ("identify", "enrol", "admin")
OPEN_RIGHTS = frozenset({"identify", "enrol"})
CLIENT_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
SECRET_BYTES = 32


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its client id (``anonymous`` in open mode) and its rights."""

    client: str
    rights: frozenset[str]

    def can(self, right: str) -> bool:
        return right in self.rights


ANONYMOUS = Principal("anonymous", OPEN_RIGHTS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_rights(text: str | list[str]) -> frozenset[str]:
    """``"identify,enrol"`` -> the set, refusing unknown rights by name."""
    items = [r.strip() for r in (text.split(",") if isinstance(text, str) else text) if r.strip()]
    unknown = sorted(set(items) - set(RIGHTS))
    if unknown or not items:
        raise VeilError(f"unknown or missing right(s) {unknown}: choose from {', '.join(RIGHTS)}")
    return frozenset(items)


class Credentials:
    """The server's table of clients: rights and the SHA-256 of each client's secret."""

    def __init__(self, clients: dict[str, dict] | None = None) -> None:
        self.clients: dict[str, dict] = dict(clients or {})

    @classmethod
    def load(cls, path: str | Path) -> Credentials:
        raw = read_private(path, "credentials file")
        try:
            data = json.loads(raw.decode())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("not a Veil credentials file")
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')} is not supported ({VERSION})")
            clients = data["clients"]
            if not isinstance(clients, dict):
                raise ValueError("'clients' must be an object")
            for cid, entry in clients.items():
                if not CLIENT_RE.match(cid) or not isinstance(entry, dict):
                    raise ValueError(f"bad client entry {cid!r}")
                if not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
                    raise ValueError(f"client {cid!r}: 'sha256' must be 64 hex digits")
                rights = entry.get("rights")
                if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
                    raise ValueError(f"client {cid!r}: 'rights' must be a list of names")
                parse_rights(rights)
        except (ValueError, KeyError, TypeError, VeilError) as exc:
            raise VeilError(f"{path} is not a valid credentials file ({exc})") from None
        return cls(clients)

    def save(self, path: str | Path) -> Path:
        body = json.dumps({"format": FORMAT, "version": VERSION, "clients": self.clients}, indent=1)
        return write_private(path, body.encode() + b"\n")

    def add(self, client: str, rights: frozenset[str], *, replace: bool = False) -> str:
        """Register ``client`` with ``rights``; returns its new token (shown once, never stored here)."""
        if not CLIENT_RE.match(client):
            raise VeilError(f"client id {client!r} must be 1-64 letters, digits, '_' or '-'")
        if client in self.clients and not replace:
            raise VeilError(f"client {client!r} already exists (pass --replace to issue it a new token)")
        secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
        self.clients[client] = {"rights": sorted(rights), "sha256": _digest(secret)}
        return f"{client}.{secret}"

    def revoke(self, client: str) -> None:
        if self.clients.pop(client, None) is None:
            raise VeilError(f"no client {client!r} in the credentials file")

    required = True  # a credentials table always asks for a token

    def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token names, or ``None``; constant-time in the secret."""
        client, _, secret = token.partition(".")
        return _check(client, secret, self.clients.get(client))


def _check(client: str, secret: str, entry: dict | None) -> Principal | None:
    """The principal when ``secret`` hashes to ``entry``'s SHA-256; the same work whether or not the client exists."""
    expected = entry["sha256"] if entry else _digest("x")
    ok = hmac.compare_digest(_digest(secret), expected) and entry is not None and bool(secret)
    return Principal(client, frozenset(entry["rights"])) if ok and entry else None


class FileCredentials:
    """A credentials file, read again whenever it changes (size, mtime or inode): revoke and rotate act at once.

    ``veil serve-credentials revoke`` rewrites the file atomically (a new inode), so the next
    request after it returns is checked against the new table; no restart.
    """

    required = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._table = Credentials()
        self._reload()

    def _reload(self) -> None:
        st = self.path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._table, self._stamp = Credentials.load(self.path), stamp

    @property
    def clients(self) -> dict[str, dict]:
        return self._table.clients

    def authenticate(self, token: str) -> Principal | None:
        try:
            self._reload()
        except (OSError, VeilError):
            return None  # a missing or broken file lets nobody in (fail closed)
        return self._table.authenticate(token)


class DatabaseCredentials:
    """Clients kept in the gallery database (``veil serve-credentials add --gallery DB``), looked up per request.

    A revoke or rotate is one committed row change, so the next request already sees it. The
    server is open (``required`` false) only until the first client is ever added. While the
    database is unreachable, clients seen before keep their last known entry so identify goes on.
    """

    def __init__(self, store: object) -> None:
        self.store = store
        self._required = False
        self._known: dict[str, dict | None] = {}

    @property
    def required(self) -> bool:
        if not self._required:
            from veil.serve.store import GalleryUnavailable

            try:
                self._required = self.store.auth_required()  # type: ignore[attr-defined]
            except GalleryUnavailable:
                return bool(self._known)
        return self._required

    def authenticate(self, token: str) -> Principal | None:
        from veil.serve.store import GalleryUnavailable

        client, _, secret = token.partition(".")
        try:
            found = self.store.client(client) if CLIENT_RE.match(client) else None  # type: ignore[attr-defined]
            entry = {"rights": found[0], "sha256": found[1]} if found else None
            if entry:  # only real clients are remembered: random ids cannot grow this
                self._known[client] = entry
            else:
                self._known.pop(client, None)
        except GalleryUnavailable:
            entry = self._known.get(client)
        return _check(client, secret, entry)


def read_token(path: str | Path) -> str:
    """A client's token from its 0600 file (refused when group or others can read it)."""
    token = read_private(path, "token file").decode(errors="replace").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{20,}", token):
        raise VeilError(f"{path} does not hold a Veil service token (CLIENT.SECRET)")
    return token
