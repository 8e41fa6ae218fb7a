"""Where the service keeps its gallery and its clients: SQLite (the default) or PostgreSQL (a ``postgresql://`` URL).

Why a database: the old gallery was one safetensors file rewritten and fsynced on every enrol
(498 ms per enrol at 100,000 entries), held by one process, and its ownership check and write were
not one transaction, so two clients enrolling the same new name at once both got 200 (issue 25).
Here every enrol is one transaction that takes the gallery's sequence counter (``BEGIN IMMEDIATE``
in SQLite, ``SELECT ... FOR UPDATE`` in PostgreSQL, so enrols commit one after another in sequence
order), checks who owns the name's confusable skeleton (:mod:`veil.serve.names`), writes one row
per embedding and advances the counter: an acknowledged enrol is a committed one.

Tables (prefix ``veil_``): ``meta`` (format, embedding size, RecNet digest), ``counters`` (``seq``:
the last entry id; ``generation``: bumped by every delete), ``names`` (skeleton -> canonical name,
owner), ``entries`` (id, name, enrolled_by, recnet, created, float32 embedding bytes) and ``clients``
(client -> rights, SHA-256 of the secret). Workers follow changes by reading the two counters
(:class:`veil.serve.gallery.Gallery`). A database failure (disk full, read-only file, lost
connection) is a :class:`GalleryUnavailable` naming the cause; the transaction is rolled back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.errors import VeilError

FORMAT = "veil-gallery-db/1"
TABLES = (
    "CREATE TABLE IF NOT EXISTS veil_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS veil_counters (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS veil_names (skeleton TEXT PRIMARY KEY, cased TEXT NOT NULL, name TEXT NOT NULL UNIQUE, "
    "owner TEXT, created DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS veil_names_cased ON veil_names (cased)",
    "CREATE TABLE IF NOT EXISTS veil_entries (id BIGINT PRIMARY KEY, name TEXT NOT NULL, enrolled_by TEXT, "
    "recnet TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, embedding {blob} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS veil_entries_name ON veil_entries (name)",
    "CREATE TABLE IF NOT EXISTS veil_clients (client TEXT PRIMARY KEY, rights TEXT NOT NULL, sha256 TEXT NOT NULL, "
    "created DOUBLE PRECISION NOT NULL)",
)


class GalleryUnavailable(VeilError):
    """The database cannot take a write (or a read) now; ``cause`` says why in a few words."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"gallery database unavailable: {cause} ({detail}); nothing was stored")
        self.cause = cause


class NameOwned(VeilError):
    """The name (or a look-alike of it) belongs to another client."""

    def __init__(self, name: str, owner: str | None) -> None:
        super().__init__(f"{name!r} is already enrolled by another client: adding to it needs the 'admin' right")
        self.name, self.owner = name, owner


def is_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def _cause(exc: BaseException) -> str:
    """A few words for the operator: what kind of failure the driver reported."""
    text = str(exc).lower()
    for needle, cause in (("full", "disk full"), ("no space", "disk full"), ("readonly", "read-only database"),
                          ("read-only", "read-only database"), ("disk i/o", "disk I/O error"),
                          ("file too large", "file size limit reached"), ("locked", "database locked"),
                          ("connection", "lost connection to the database"), ("closed", "lost connection to the "
                          "database"), ("terminat", "lost connection to the database"),
                          ("server", "lost connection to the database")):
        if needle in text:
            return cause
    return "database error"


@dataclass(frozen=True)
class Enrolment:
    """One enrol request: the canonical name, its two skeleton keys, float32 rows, the client, its admin right."""

    name: str
    keys: tuple[str, str]
    rows: list[bytes]
    client: str | None
    admin: bool


class Store:
    """The SQL shared by both back-ends; a subclass opens connections and names its driver's errors."""

    blob = "BLOB"
    placeholder = "?"
    driver_errors: tuple[type[BaseException], ...] = ()
    where: str = ""

    def __init__(self) -> None:
        self._write_lock = threading.Lock()  # one transaction at a time on the write connection
        self._read_lock = threading.Lock()

    # --- connections (subclasses) -------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin(self, cur: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self.driver_errors as exc:
            self._lost(exc)
            raise GalleryUnavailable(_cause(exc), str(exc).strip().splitlines()[0][:200] if str(exc) else
                                     type(exc).__name__) from None

    def _lost(self, exc: BaseException) -> None:
        """Forget a connection the driver reports broken (PostgreSQL reconnects on the next call)."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._write_lock, self._guard():
            conn = self._writer()
            cur = conn.cursor()
            try:
                self._begin(cur)
                yield cur
                conn.commit()
            except BaseException:
                with suppress(Exception):  # a broken connection cannot roll back; it is replaced instead
                    conn.rollback()
                raise

    def _writer(self) -> Any:
        raise NotImplementedError

    def _reader(self) -> Any:
        raise NotImplementedError

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._read_lock, self._guard():
            conn = self._reader()
            cur = conn.cursor()
            cur.execute(self._sql(sql), args)
            rows = cur.fetchall()
            conn.commit()  # a no-op on the autocommit reader; ends a transaction on any other connection
            return rows

    # --- schema --------------------------------------------------------------------------------------------
    def initialise(self, emb_dim: int, recnet_digest: str) -> None:
        """Create the tables, or check an existing gallery's format, embedding size and RecNet."""
        with self.transaction() as cur:
            for sql in TABLES:
                cur.execute(sql.format(blob=self.blob))
            for key, value in (("format", FORMAT), ("emb_dim", str(emb_dim)), ("recnet", recnet_digest)):
                cur.execute(self._sql("INSERT INTO veil_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"),
                            (key, value))
            for key in ("seq", "generation"):
                cur.execute(self._sql("INSERT INTO veil_counters (key, value) VALUES (?, 0) "
                                      "ON CONFLICT (key) DO NOTHING"), (key,))
            cur.execute("SELECT key, value FROM veil_meta")
            meta = dict(cur.fetchall())
        if meta.get("format") != FORMAT:
            raise VeilError(f"{self.where} is not a Veil gallery database (format {meta.get('format')!r})")
        if meta.get("emb_dim") != str(emb_dim) or meta.get("recnet") != recnet_digest:
            raise VeilError(f"gallery {self.where} was enrolled with another RecNet (digest {meta.get('recnet')}, "
                            f"embedding size {meta.get('emb_dim')}; server has {recnet_digest}, {emb_dim}); "
                            "use a new --gallery")

    # --- gallery -------------------------------------------------------------------------------------------
    def counters(self) -> tuple[int, int]:
        rows = dict(self.read("SELECT key, value FROM veil_counters"))
        return int(rows["seq"]), int(rows["generation"])

    def entries_after(self, last_id: int) -> list[tuple[int, str, bytes]]:
        return [(int(i), n, bytes(b)) for i, n, b in
                self.read("SELECT id, name, embedding FROM veil_entries WHERE id > ? ORDER BY id", (last_id,))]

    def enrol(self, name: str, keys: tuple[str, str], rows: list[bytes], client: str | None, recnet: str,
              admin: bool) -> tuple[str, int]:
        """One enrol in its own transaction; see :meth:`enrol_batch`."""
        result = self.enrol_batch([Enrolment(name, keys, rows, client, admin)], recnet)[0]
        if isinstance(result, NameOwned):
            raise result
        return result

    def enrol_batch(self, batch: list[Enrolment], recnet: str) -> list[tuple[str, int] | NameOwned]:
        """Several enrols in one transaction (group commit: one fsync for all); per enrol (stored name, last id).

        Under the sequence counter's lock each enrol in turn checks who owns the names its keys match
        (:func:`veil.serve.names.skeletons`) and writes its rows, so a later enrol in the batch sees
        an earlier one's new name. The stored name is the canonical name first enrolled under these
        keys (``Person0`` by its owner adds to ``person0``). An enrol whose name belongs to another
        client (``admin`` false; ``client=None``, open mode, never owns one) gets a :class:`NameOwned`
        and writes nothing; the others commit together or, on a database failure, not at all.
        """
        now = time.time()
        out: list[tuple[str, int] | NameOwned] = []
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT value FROM veil_counters WHERE key = ?" + self._for_update()), ("seq",))
            seq = int(cur.fetchone()[0])
            for e in batch:
                cur.execute(self._sql("SELECT name, owner FROM veil_names WHERE skeleton = ? OR cased = ? "
                                      "ORDER BY created"), e.keys)
                found = cur.fetchall()
                refused = next((NameOwned(n, o) for n, o in found if not e.admin and (e.client is None or
                                                                                       o != e.client)), None)
                if refused is not None:
                    out.append(refused)
                    continue
                stored = found[0][0] if found else e.name
                if not found:
                    cur.execute(self._sql("INSERT INTO veil_names (skeleton, cased, name, owner, created) "
                                          "VALUES (?, ?, ?, ?, ?)"), (*e.keys, e.name, e.client, now))
                cur.executemany(self._sql("INSERT INTO veil_entries (id, name, enrolled_by, recnet, created, "
                                          "embedding) VALUES (?, ?, ?, ?, ?, ?)"),
                                [(seq + 1 + i, stored, e.client, recnet, now, row) for i, row in enumerate(e.rows)])
                seq += len(e.rows)
                out.append((stored, seq))
            cur.execute(self._sql("UPDATE veil_counters SET value = ? WHERE key = ?"), (seq, "seq"))
        return out

    def delete(self, keys: tuple[str, str]) -> int:
        """Remove the (first) name with these keys and all its entries; how many entries went."""
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT value FROM veil_counters WHERE key = ?" + self._for_update()),
                        ("generation",))
            cur.execute(self._sql("SELECT name FROM veil_names WHERE skeleton = ? OR cased = ? ORDER BY created"),
                        keys)
            found = cur.fetchone()
            if found is None:
                return 0
            name = found[0]
            cur.execute(self._sql("DELETE FROM veil_entries WHERE name = ?"), (name,))
            removed = cur.rowcount
            cur.execute(self._sql("DELETE FROM veil_names WHERE name = ?"), (name,))
            if removed:
                cur.execute(self._sql("UPDATE veil_counters SET value = value + 1 WHERE key = ?"), ("generation",))
        return int(removed)

    def owners(self, keys: tuple[str, str]) -> list[str | None]:
        """The owners of the enrolled names these keys match (empty: a new name)."""
        return [r[0] for r in self.read("SELECT owner FROM veil_names WHERE skeleton = ? OR cased = ?", keys)]

    def listing(self) -> list[dict]:
        rows = self.read("SELECT n.name, n.owner, COUNT(e.id) FROM veil_names n LEFT JOIN veil_entries e "
                         "ON e.name = n.name GROUP BY n.name, n.owner ORDER BY n.name")
        return [{"name": n, "entries": int(c), "enrolled_by": o} for n, o, c in rows]

    def _for_update(self) -> str:
        return ""

    # --- clients -------------------------------------------------------------------------------------------
    def client(self, client: str) -> tuple[list[str], str] | None:
        rows = self.read("SELECT rights, sha256 FROM veil_clients WHERE client = ?", (client,))
        return (rows[0][0].split(","), rows[0][1]) if rows else None

    def clients(self) -> dict[str, dict]:
        return {c: {"rights": r.split(","), "sha256": s}
                for c, r, s in self.read("SELECT client, rights, sha256 FROM veil_clients ORDER BY client")}

    def put_client(self, client: str, rights: list[str], sha256: str, replace: bool) -> None:
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT 1 FROM veil_clients WHERE client = ?"), (client,))
            if cur.fetchone() is not None and not replace:
                raise VeilError(f"client {client!r} already exists (pass --replace to issue it a new token)")
            cur.execute(self._sql("DELETE FROM veil_clients WHERE client = ?"), (client,))
            cur.execute(self._sql("INSERT INTO veil_clients (client, rights, sha256, created) VALUES (?, ?, ?, ?)"),
                        (client, ",".join(sorted(rights)), sha256, time.time()))
            cur.execute(self._sql("INSERT INTO veil_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"),
                        ("auth", "bearer"))

    def drop_client(self, client: str) -> bool:
        with self.transaction() as cur:
            cur.execute(self._sql("DELETE FROM veil_clients WHERE client = ?"), (client,))
            return bool(cur.rowcount)

    def auth_required(self) -> bool:
        """True once any client was ever added: revoking the last one does not open the server."""
        return bool(self.read("SELECT 1 FROM veil_meta WHERE key = 'auth'"))


class SQLiteStore(Store):
    """A file: WAL journal (readers never wait for the writer), ``synchronous=FULL`` (a commit is on disk)."""

    driver_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.where = str(self.path)
        if not create and not self.path.exists():
            raise VeilError(f"no gallery database at {self.path}")
        if self.path.exists():
            with open(self.path, "rb") as f:
                head = f.read(16)
            if head and head != b"SQLite format 3\x00":
                hint = (" (an old safetensors gallery: convert it with `veil serve-gallery migrate OLD NEW`)"
                        if head[8:9] == b"{" else "")
                raise VeilError(f"{self.path} is not an SQLite gallery database{hint}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._w = self._connect()
            self._r = self._connect()
        except sqlite3.Error as exc:
            raise VeilError(f"cannot open the gallery database {self.path}: {exc}") from None
        try:
            self.path.chmod(0o600)  # names are personal data
        except OSError:
            pass

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _writer(self) -> sqlite3.Connection:
        return self._w

    def _reader(self) -> sqlite3.Connection:
        return self._r

    def _begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")  # the write lock now: the owner check and the write are one transaction

    def read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._read_lock, self._guard():
            return self._r.execute(sql, args).fetchall()  # autocommit: each statement sees the latest commit

    def close(self) -> None:
        for conn in (self._w, self._r):
            conn.close()


class PostgresStore(Store):
    """A PostgreSQL database by URL; a lost connection is re-opened on the next call (at most once a second)."""

    blob = "BYTEA"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        self.driver_errors = (psycopg.Error,)
        self.url = url
        self.where = url.split("@")[-1] if "@" in url else url  # never echo a password
        self._conns: dict[str, Any] = {}
        self._next_try: dict[str, float] = {}
        try:
            self._conns["w"], self._conns["r"] = self._connect(), self._connect(autocommit=True)
        except psycopg.Error as exc:
            raise VeilError(f"cannot connect to the gallery database {self.where}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}") from None

    def _connect(self, autocommit: bool = False) -> Any:
        """The writer runs transactions; the reader autocommits, so a read is one round trip and sees every commit."""
        return self._psycopg.connect(self.url, connect_timeout=5, autocommit=autocommit)

    def _conn(self, role: str) -> Any:
        conn = self._conns.get(role)
        if conn is None or conn.closed:
            if time.monotonic() < self._next_try.get(role, 0.0):
                raise self._psycopg.OperationalError("connection lost; retrying at most once a second")
            self._next_try[role] = time.monotonic() + 1.0
            conn = self._conns[role] = self._connect(autocommit=role == "r")
        return conn

    def _writer(self) -> Any:
        return self._conn("w")

    def _reader(self) -> Any:
        return self._conn("r")

    def _lost(self, exc: BaseException) -> None:
        for role, conn in list(self._conns.items()):
            if conn is not None and (conn.closed or conn.broken):
                self._conns.pop(role, None)

    def _begin(self, cur: Any) -> None:
        """psycopg opens a transaction at the first statement (autocommit off)."""

    def _for_update(self) -> str:
        return " FOR UPDATE"  # enrols take the counter row in turn: commit order is sequence order

    def close(self) -> None:
        for conn in self._conns.values():
            if conn is not None:
                conn.close()
        self._conns.clear()


def open_store(target: str | Path, *, create: bool = True) -> Store:
    """SQLite for a path, PostgreSQL for a ``postgresql://`` URL."""
    return PostgresStore(str(target)) if is_url(target) else SQLiteStore(Path(target), create=create)
