"""The gallery part of ``python bench/serve.py --part gallery``: enrol and identify against galleries of 1,000 and
100,000 entries (and 1,000,000 with ``--million``), on SQLite and PostgreSQL.

Per backend and size: a fresh gallery bulk-filled with SYNTHETIC random unit embeddings of the RecNet's
output size (latency does not depend on faces), the real server (``python -m veil.serve``) started on
it, then over loopback: ``--sequential`` enrols one after another (one feature row + its mirror per
request, as a client sends) and as many identify requests; at 100,000 entries also 16 concurrent
enrol clients (throughput, errors), 16 concurrent enrol clients while one worker is killed with
SIGKILL (every acknowledged enrol must be in the database afterwards), and identify throughput of
two workers on one gallery against one (and whether each enrol through one is identified through the
other). The PostgreSQL cluster is a throwaway one (``tests/serve/postgres.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch

from veil.serve.protocol import CONTENT_TYPE, encode
from veil.serve.store import open_store

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.serve.postgres import start_cluster  # noqa: E402

HEADERS = {"Content-Type": CONTENT_TYPE}


def bulk_fill(target: str, n: int, emb_dim: int, digest: str, seed: int) -> float:
    """SYNTHETIC: ``n`` random unit embeddings under 1,000-row names, written straight into the database."""
    from veil.serve.gallery import Gallery

    Gallery(target, emb_dim, digest).close()  # tables and meta
    store = open_store(target)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    chunk = 20_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        emb = rng.standard_normal((m, emb_dim)).astype("<f4")
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        with store.transaction() as cur:
            names = sorted({f"synthetic{(start + i) // 1000}" for i in range(m)})
            cur.executemany(store._sql("INSERT INTO veil_names (skeleton, cased, name, owner, created) "
                                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (skeleton) DO NOTHING"),
                            [(nm, nm, nm, "bench", 0.0) for nm in names])
            cur.executemany(store._sql("INSERT INTO veil_entries (id, name, enrolled_by, recnet, created, embedding) "
                                       "VALUES (?, ?, ?, ?, ?, ?)"),
                            [(start + i + 1, f"synthetic{(start + i) // 1000}", "bench", digest, 0.0, emb[i].tobytes())
                             for i in range(m)])
            cur.execute(store._sql("UPDATE veil_counters SET value = ? WHERE key = 'seq'"), (start + m,))
    store.close()
    return time.perf_counter() - t


def entries(target: str) -> int:
    store = open_store(target)
    try:
        return int(store.read("SELECT COUNT(*) FROM veil_entries")[0][0])
    finally:
        store.close()


def names_in(target: str, names: list[str]) -> int:
    store = open_store(target)
    try:
        found = {r[0] for r in store.read("SELECT name FROM veil_names")}
        return sum(n in found for n in names)
    finally:
        store.close()


def gallery_only(target: str, emb_dim: int, digest: str, count: int, threads: int) -> dict:
    """Gallery.enrol (one committed row) and Gallery.identify (one probe) in process: no HTTP, no RecNet."""
    from veil.serve.gallery import Gallery

    torch.set_num_threads(threads)  # as the server runs (two OpenMP threads on a loaded 2-core machine stall)
    g = Gallery(target, emb_dim, digest)
    t = time.perf_counter()
    g.close()
    g = Gallery(target, emb_dim, digest)
    load = time.perf_counter() - t
    probes = torch.nn.functional.normalize(torch.randn(count, emb_dim), dim=1)
    enrol, ident = [], []
    for i in range(count):
        t = time.perf_counter()
        g.enrol(f"inproc-{i}", probes[i:i + 1], "bench")
        enrol.append(time.perf_counter() - t)
    for i in range(count):
        t = time.perf_counter()
        g.identify(probes[i:i + 1])
        ident.append(time.perf_counter() - t)
    g.close()
    return {"n": count, "open_and_load_seconds": load, "enrol": quantiles(enrol), "identify": quantiles(ident)}


def body(shape: tuple[int, int], g: torch.Generator) -> bytes:
    f = torch.randn(2, 1, *shape, generator=g)
    return encode(f[0], f[1])


def sequential(url: str, shape: tuple[int, int], count: int, g: torch.Generator, tag: str) -> dict:
    enrol, ident = [], []
    with httpx.Client(base_url=url, timeout=120, headers=HEADERS) as c:
        for i in range(count):
            b = body(shape, g)
            t = time.perf_counter()
            c.post("/v1/enrol", params={"name": f"{tag}-{i}"}, content=b).raise_for_status()
            enrol.append(time.perf_counter() - t)
        for _ in range(count):
            b = body(shape, g)
            t = time.perf_counter()
            c.post("/v1/identify", content=b).raise_for_status()
            ident.append(time.perf_counter() - t)
    return {"n": count, "enrol_ms": quantiles(enrol), "identify_ms": quantiles(ident)}


def quantiles(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=100) if len(xs) > 1 else [xs[0]] * 99
    return {"p50": 1000 * q[49], "p90": 1000 * q[89], "mean": 1000 * statistics.fmean(xs)}


class RawClient:
    """A lean HTTP/1.1 keep-alive client (asyncio streams, requests pre-encoded) for the throughput parts.

    httpx spends 1-1.5 ms of CPU per request; on a 2-core machine that shares its cores with the
    server, that is a third of what one worker spends on an identify, so it hides the server's scaling.
    This client spends about a tenth of that (measured: ``client_cpu_ms_per_request``) and reads only
    the status line, Content-Length and the body. Any failure to connect, send or read is raised.
    """

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"POST {target} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answer = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, StopIteration):
            self.close()
            raise ConnectionError(f"no answer from {self.host}:{self.port}") from None
        if b"connection: close" in head.lower():
            self.close()
        return int(head[9:12]), answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (robust to other jobs on the machine)."""
    total = 0.0
    for p in pids:
        with contextlib.suppress(psutil.Error):
            total += sum(psutil.Process(p).cpu_times()[:2])
    return total


def database_pids(cluster: object) -> list[int]:
    """The PostgreSQL cluster's processes (postmaster and its backends): their CPU is the database's share."""
    if cluster is None:
        return []
    master = int((cluster.data / "postmaster.pid").read_text().split()[0])  # type: ignore[attr-defined]
    return [master, *(c.pid for c in psutil.Process(master).children())]


async def concurrent_enrols(urls: list[str], shape: tuple[int, int], total: int, clients: int, tag: str,
                            kill: object = None, pids: tuple[list[int], list[int]] = ([], [])) -> dict:
    """``clients`` concurrent enrol loops over ``urls`` (round robin); names acknowledged with 200 are returned."""
    g = torch.Generator().manual_seed(sum(map(ord, tag)))
    bodies = [body(shape, g) for _ in range(min(total, 64))]
    acknowledged: list[str] = []
    errors, unanswered = 0, 0
    latencies: list[float] = []
    counter = iter(range(total))

    async def loop(k: int) -> None:
        nonlocal errors, unanswered
        which = k % len(urls)
        client = RawClient(urls[which])
        for i in counter:
            t = time.perf_counter()
            try:
                status, _ = await client.post(f"/v1/enrol?name={tag}-{i}", bodies[i % len(bodies)])
            except ConnectionError:
                unanswered += 1  # the connection died with the worker: not acknowledged
                which = (which + 1) % len(urls)  # go on through the other worker, as a balancer would
                client = RawClient(urls[which])
                continue
            latencies.append(time.perf_counter() - t)
            if status == 200:
                acknowledged.append(f"{tag}-{i}")
            else:
                errors += 1
        client.close()

    server0, db0 = cpu_seconds(pids[0]), cpu_seconds(pids[1])
    cpu0, t0 = time.process_time(), time.perf_counter()
    tasks = [asyncio.create_task(loop(k)) for k in range(clients)]
    if kill is not None:
        await asyncio.sleep(1.0)
        kill()  # type: ignore[operator]
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    return {"requests": total, "clients": clients, "acknowledged": acknowledged, "errors": errors,
            "unanswered": unanswered, "wall_seconds": wall, "enrols_per_second": len(acknowledged) / wall,
            "latency_ms": quantiles(latencies) if latencies else None,
            "client_cores": (time.process_time() - cpu0) / wall,
            "server_cores": (cpu_seconds(pids[0]) - server0) / wall,
            "database_cores": (cpu_seconds(pids[1]) - db0) / wall, "load_average": os.getloadavg()}


async def identify_load(urls: list[str], pids: list[int], shape: tuple[int, int], total: int, clients: int,
                        db: list[int]) -> dict:
    """``clients`` concurrent identify loops spread over ``urls``; throughput and where the CPU went."""
    g = torch.Generator().manual_seed(7)
    bodies = [body(shape, g) for _ in range(64)]
    errors = 0
    counter = iter(range(total))

    async def loop(k: int) -> None:
        nonlocal errors
        client = RawClient(urls[k % len(urls)])
        for i in counter:
            status, _ = await client.post("/v1/identify", bodies[i % len(bodies)])
            errors += status != 200
        client.close()

    server0, db0, cpu0, t0 = cpu_seconds(pids), cpu_seconds(db), time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    client_cpu, server_cpu = time.process_time() - cpu0, cpu_seconds(pids) - server0
    return {"requests": total, "clients": clients, "errors": errors, "throughput_rps": total / wall,
            "wall_seconds": wall, "client_cores": client_cpu / wall, "server_cores": server_cpu / wall,
            "database_cores": (cpu_seconds(db) - db0) / wall,
            "server_cpu_ms_per_request": 1000 * server_cpu / total,
            "client_cpu_ms_per_request": 1000 * client_cpu / total, "load_average": os.getloadavg()}


def cross_check(one: str, two: str, shape: tuple[int, int], count: int) -> int:
    """Enrol through one worker, identify the same features through the other: how many come back by name."""
    g = torch.Generator().manual_seed(11)
    hits = 0
    with httpx.Client(timeout=120, headers=HEADERS) as c:
        for i in range(count):
            b = body(shape, g)
            c.post(one + "/v1/enrol", params={"name": f"cross-{i}"}, content=b).raise_for_status()
            hits += c.post(two + "/v1/identify", content=b).json()["results"][0]["name"] == f"cross-{i}"
    return hits


def middle(rounds: list[dict]) -> dict:
    """The round of median throughput (the lower middle one of an even count)."""
    return sorted(rounds, key=lambda x: x["throughput_rps"])[(len(rounds) - 1) // 2]


def scaling_note(one: dict, two: dict) -> str:
    """Where the cores went: a ratio that two workers cannot reach on this machine is said to be out of reach."""
    cores = os.cpu_count() or 1
    # cores one worker's throughput took, its client and the database included
    need = one["server_cores"] + one["client_cores"] + one["database_cores"]
    reach = min(2.0, cores / need) if need else 2.0
    return (f"one worker used {one['server_cores']:.2f} cores, its client {one['client_cores']:.2f}, the database "
            f"{one['database_cores']:.2f}; two workers {two['server_cores']:.2f} + {two['client_cores']:.2f} + "
            f"{two['database_cores']:.2f}; with {cores} cores two workers can reach at most {reach:.2f}x by CPU")


def run_backend(backend: str, recnet: Path, emb_dim: int, digest: str, shape: tuple[int, int], tmp: Path,
                sizes: list[int], start, args) -> dict:  # noqa: ANN001
    out: dict = {"backend": backend, "sizes": {}}
    cluster = start_cluster() if backend == "postgresql" else None
    try:
        for size in sizes:
            target = cluster.new_database() if cluster else str(tmp / f"gallery-{size}.db")
            fill = bulk_fill(target, size, emb_dim, digest, args.seed)
            in_process = gallery_only(target, emb_dim, digest, 50, args.threads)
            t = time.perf_counter()
            proc, url = start(recnet, target, args.threads)
            startup = time.perf_counter() - t
            g = torch.Generator().manual_seed(args.seed)
            row: dict = {"entries": size, "fill_seconds": fill, "server_start_seconds": startup,
                         **sequential(url, shape, args.sequential, g, "seq"), "gallery_only_ms": in_process,
                         "load_average": os.getloadavg()}
            print(f"{backend} {size}: enrol p50 {row['enrol_ms']['p50']:.1f} ms, identify p50 "
                  f"{row['identify_ms']['p50']:.1f} ms", flush=True)
            if size == 100_000:
                conc = asyncio.run(concurrent_enrols([url], shape, args.concurrent_enrols, 16, "conc",
                                                     pids=([proc.pid], database_pids(cluster))))
                conc["acknowledged_in_database"] = names_in(target, conc["acknowledged"])
                conc["acknowledged"] = len(conc["acknowledged"])
                row["concurrent_enrols"] = conc
                print(f"  16 concurrent enrols: {conc['enrols_per_second']:.0f}/s, errors {conc['errors']}, "
                      f"cores: server {conc['server_cores']:.2f}, client {conc['client_cores']:.2f}, database "
                      f"{conc['database_cores']:.2f}", flush=True)
                # a second worker; then SIGKILL the first while 16 clients enrol through both
                proc2, url2 = start(recnet, target, args.threads)
                row["cross_worker_identified"] = cross_check(url, url2, shape, 20)
                db = database_pids(cluster)
                rounds: dict[str, list[dict]] = {"one": [], "two": []}
                for r in range(4):  # alternating, so a burst of other jobs does not land on one side only
                    for side in (("one", "two") if r % 2 == 0 else ("two", "one")):
                        urls, pids = ([url], [proc.pid]) if side == "one" else ([url, url2], [proc.pid, proc2.pid])
                        rounds[side].append(asyncio.run(identify_load(urls, pids, shape, args.identify_requests, 8,
                                                                      db)))
                one, two = (middle(rounds[k]) for k in ("one", "two"))
                row["identify_one_worker"], row["identify_two_workers"] = one, two
                row["identify_rounds_rps"] = {k: [round(x["throughput_rps"], 1) for x in v] for k, v in rounds.items()}
                row["two_over_one_worker_throughput"] = two["throughput_rps"] / one["throughput_rps"]
                row["two_workers_cpu_note"] = scaling_note(one, two)
                print(f"  two workers / one: {row['two_over_one_worker_throughput']:.2f} "
                      f"({row['two_workers_cpu_note']})", flush=True)
                killed = asyncio.run(concurrent_enrols([url, url2], shape, args.concurrent_enrols, 16, "kill",
                                                       kill=functools.partial(os.kill, proc.pid, signal.SIGKILL)))
                killed["acknowledged_in_database"] = names_in(target, killed["acknowledged"])
                killed["acknowledged_lost"] = len(killed["acknowledged"]) - killed["acknowledged_in_database"]
                killed["acknowledged"] = len(killed["acknowledged"])
                row["sigkill_during_enrols"] = killed
                print(f"  SIGKILL: {killed['acknowledged']} acknowledged, {killed['acknowledged_lost']} lost",
                      flush=True)
                proc2.terminate()
                proc2.wait(timeout=30)
            proc.kill() if proc.poll() is None else None
            proc.wait(timeout=30)
            row["entries_after"] = entries(target)
            out["sizes"][str(size)] = row
    finally:
        if cluster:
            cluster.stop()
    return out
