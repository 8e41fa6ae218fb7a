"""Benchmark: bounded load on the XNN-d recognition server over loopback, plain and with TLS + credentials.

    python bench/serve.py [--requests 2000] [--concurrency 8] [--recnet PATH] [--rounds 2]

Starts the real server (``python -m veil.serve``) on a free loopback port, enrols a gallery of 100
identities, then sends ``--requests`` identify requests (one probe feature + its mirror each, a
safetensors body of 2 x 17 x 256 float32 = 34.9 KB) from ``--concurrency`` concurrent clients, and
reports throughput, p50/p99 latency and the error count (target 0). It does so in two modes, in
alternating rounds on the same machine: ``plain`` (HTTP, open) and ``tls_auth`` (HTTPS with a
self-signed certificate, every request carrying a bearer token checked against the credentials
file; target: throughput within 25% of plain). Results: bench/results/serve.json (the common bench envelope,
``veil.bench``) and serve.md.
Without ``--recnet`` it uses runs/bench-table4/recnet_server.safetensors when present, else a
randomly initialised RecNet of the same architecture (timing does not depend on weights).
Client and server share the machine's cores, so the figures are a floor for a dedicated server.

``python bench/serve.py --part gallery [--sizes 1000,100000] [--backends sqlite,postgresql]`` measures the
gallery database instead (:mod:`serve_gallery`: enrol / identify p50 by gallery size, 16 concurrent enrols,
a SIGKILLed worker, two workers on one gallery) and keeps both parts in the same serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import torch
from _common import HERE, Envelope, command_line, publish  # also puts src/ on sys.path

from veil.models.recnet import RecNet, RecNetConfig, load_recnet, save_recnet  # noqa: E402
from veil.serve.auth import Credentials, parse_rights  # noqa: E402
from veil.serve.protocol import CONTENT_TYPE, encode  # noqa: E402
from veil.serve.selfsigned import write_self_signed  # noqa: E402

DEFAULT_RECNET = HERE.parent / "runs" / "bench-table4" / "recnet_server.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(recnet: Path, gallery: Path, threads: int, extra: tuple[str, ...] = (),
          verify: ssl.SSLContext | bool = True) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "veil.serve", "--recnet", str(recnet), "--gallery", str(gallery),
                             "--port", str(port), "--threads", str(threads), *extra], env=env)
    url = f"{'https' if '--tls-cert' in extra else 'http'}://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1, verify=verify).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


async def load(url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str],
               verify: ssl.SSLContext | bool) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t = time.perf_counter()
            try:
                r = await client.post("/v1/identify", content=body, headers={"Content-Type": CONTENT_TYPE, **headers})
                ok = r.status_code == 200 and len(r.json()["results"]) == 1
            except (httpx.HTTPError, ValueError, KeyError):
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += not ok

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, verify=verify) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def serving_versions() -> dict:
    """The versions of what carries the requests (HTTP stack, TLS), for the envelope's environment."""
    import cryptography
    import fastapi
    import uvicorn

    return {"fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__, "httpx": httpx.__version__,
            "cryptography": cryptography.__version__}


def run_mode(mode: str, recnet_path: Path, tmp: Path, args: argparse.Namespace, shape: tuple[int, int],
             seed: int) -> dict:
    """One round: a fresh server in ``mode``, 100 enrolments, then the timed identify load."""
    n, d = shape
    extra: tuple[str, ...] = ()
    verify: ssl.SSLContext | bool = True
    headers: dict[str, str] = {}
    if mode == "tls_auth":
        cert, key = write_self_signed(tmp / "server.crt", tmp / "server.key")
        creds = Credentials()
        token = creds.add("bench", parse_rights("identify,enrol"), replace=True)
        creds.save(tmp / "credentials.json")
        extra = ("--tls-cert", str(cert), "--tls-key", str(key), "--credentials", str(tmp / "credentials.json"))
        verify = ssl.create_default_context(cafile=str(cert))
        headers = {"Authorization": f"Bearer {token}"}
    g = torch.Generator().manual_seed(seed)
    gallery = tmp / f"gallery-{mode}-{seed}.safetensors"
    proc, url = start(recnet_path, gallery, args.threads, extra, verify)
    try:
        with httpx.Client(base_url=url, timeout=60, verify=verify, headers=headers) as c:
            for i in range(100):
                f = torch.randn(2, n, d, generator=g)
                c.post("/v1/enrol", params={"name": f"person{i}"}, content=encode(f[:1], f[1:])).raise_for_status()
        bodies = [encode(*torch.randn(2, 1, n, d, generator=g).unbind(0)) for _ in range(args.requests)]
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        latencies, errors, wall = asyncio.run(load(url, bodies, args.concurrency, headers, verify))
        cpu = sum(server.cpu_times()[:2]) - cpu0  # the server's own CPU: robust to other jobs on the machine
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    q = statistics.quantiles(latencies, n=100)
    return {"mode": mode, "requests": args.requests, "errors": errors, "throughput_rps": args.requests / wall,
            "latency_ms": {"p50": 1000 * q[49], "p99": 1000 * q[98], "mean": 1000 * statistics.fmean(latencies),
                           "max": 1000 * max(latencies)}, "wall_seconds": wall, "body_bytes": len(bodies[0]),
            "server_cpu_ms_per_request": 1000 * cpu / args.requests, "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--recnet", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--rounds", type=int, default=2, help="alternating plain / tls_auth rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    parser.add_argument("--part", choices=("load", "gallery"), default="load",
                        help="load: plain vs TLS identify load (above); gallery: the database figures of "
                             "bench/serve_gallery.py, merged into the same JSON")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="1000,100000", help="gallery sizes (add 1000000 for the 1M figure)")
    parser.add_argument("--sequential", type=int, default=60, help="sequential enrols and identifies per size")
    parser.add_argument("--concurrent-enrols", type=int, default=800)
    parser.add_argument("--identify-requests", type=int, default=1500,
                        help="identify requests per round (4 alternating rounds of one and of two workers)")
    args = parser.parse_args()
    if args.part == "gallery":
        return gallery_part(args)
    torch.manual_seed(args.seed)
    envelope = Envelope("serve", seed=args.seed, device="cpu", versions=serving_versions())
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        recnet_path, weights, rec = bench_recnet(args.recnet, Path(tmp))
        shape = (rec.cfg.in_tokens, rec.cfg.in_dim)
        for r in range(args.rounds):
            order = ("plain", "tls_auth") if r % 2 == 0 else ("tls_auth", "plain")
            for mode in order:
                rounds.append({"round": r, **run_mode(mode, recnet_path, Path(tmp), args, shape, args.seed + r)})
                print(f"round {r} {mode}: {rounds[-1]['throughput_rps']:.1f} req/s, errors {rounds[-1]['errors']}",
                      flush=True)
    modes = {}
    for mode in ("plain", "tls_auth"):
        rs = [x for x in rounds if x["mode"] == mode]
        modes[mode] = {"errors": sum(x["errors"] for x in rs),
                       "throughput_rps_median": statistics.median(x["throughput_rps"] for x in rs),
                       "throughput_rps_rounds": [round(x["throughput_rps"], 1) for x in rs],
                       "p50_ms_median": statistics.median(x["latency_ms"]["p50"] for x in rs),
                       "p99_ms_median": statistics.median(x["latency_ms"]["p99"] for x in rs),
                       "server_cpu_ms_per_request_median": statistics.median(x["server_cpu_ms_per_request"]
                                                                            for x in rs)}
    ratio = modes["tls_auth"]["throughput_rps_median"] / modes["plain"]["throughput_rps_median"]
    cpu_ratio = (modes["plain"]["server_cpu_ms_per_request_median"]
                 / modes["tls_auth"]["server_cpu_ms_per_request_median"])
    result = envelope.finish({
        "requests": args.requests, "concurrency": args.concurrency, "rounds": rounds, "modes": modes,
        "tls_auth_over_plain_throughput": ratio, "target_ratio": 0.75,
        "tls_auth_over_plain_capacity_by_server_cpu": cpu_ratio, "errors": sum(m["errors"] for m in modes.values()),
        "throughput_rps": modes["plain"]["throughput_rps_median"], "body_bytes": rounds[0]["body_bytes"],
        "gallery": 100, "recnet": weights, "server_threads": args.threads})
    loads = ", ".join(f"{x['load_average'][0]:.1f}" for x in rounds)
    md = ["| mode | requests x rounds | concurrency | errors | throughput (median) | rounds | p50 | p99 | server CPU "
          "/ request |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, m in modes.items():
        md.append(f"| {mode} | {args.requests} x {args.rounds} | {args.concurrency} | {m['errors']} | "
                  f"{m['throughput_rps_median']:.1f} req/s | {', '.join(map(str, m['throughput_rps_rounds']))} | "
                  f"{m['p50_ms_median']:.1f} ms | {m['p99_ms_median']:.1f} ms | "
                  f"{m['server_cpu_ms_per_request_median']:.2f} ms |")
    md.append(f"\nTLS + auth / plain throughput: {ratio:.3f} (target >= 0.75); by the server's CPU per request: "
              f"{cpu_ratio:.3f}. Load average during the rounds: "
              f"{loads}. Loopback, client and server on the same "
              f"{os.cpu_count()}-core machine; server RecNet {weights}, {args.threads} torch thread(s); gallery of "
              f"100; body {result['figures']['body_bytes']} B; regenerate: `{result['command']}`.")
    publish(args.out, result, "\n".join(md) + "\n")


def bench_recnet(given: Path | None, tmp: Path) -> tuple[Path, str, RecNet]:
    """The served RecNet: the one given, else table4's trained one, else a SYNTHETIC random one of its shape
    (latency does not depend on the weights). Returns its path, a description of its weights, and the model."""
    path = given or (DEFAULT_RECNET if DEFAULT_RECNET.exists() else None)
    weights = "trained (bench/table4.py)" if path else "random init, same architecture"
    if path is None:
        path = save_recnet(RecNet(RecNetConfig(17, 256, 128, 2, 4, 128)), tmp / "r.safetensors", {"synthetic": True})
    rec, _ = load_recnet(path)
    return Path(path), weights, rec


def scheduling() -> str:
    """This process's autogroup and its nice: with autogroup scheduling (Linux's default for sessions) another session's
    ``nice 19`` jobs compete as one group of equal weight, so the figures depend on this line as much as on the load."""
    group = Path("/proc/self/autogroup")
    enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
    on = enabled.read_text().strip() == "1" if enabled.exists() else False
    return f"autogroup scheduling {'on' if on else 'off'}; " + (group.read_text().strip() if group.exists() else "")


def gallery_part(args: argparse.Namespace) -> None:
    """Enrol / identify at 1,000 and 100,000 entries on both backends; kept beside the load figures in serve.json."""
    import json

    from serve_gallery import run_backend

    from veil.serve.app import file_digest

    envelope = Envelope("serve", seed=args.seed, device="cpu", versions=serving_versions())
    with tempfile.TemporaryDirectory() as tmp:
        recnet_path, weights, rec = bench_recnet(args.recnet, Path(tmp))
        shape = (rec.cfg.in_tokens, rec.cfg.in_dim)
        sizes = [int(x) for x in args.sizes.split(",")]
        backends = [run_backend(b, recnet_path, rec.cfg.emb_dim, file_digest(recnet_path), shape, Path(tmp), sizes,
                                start, args) for b in args.backends.split(",")]
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"figures": {}}
    figures = {k: v for k, v in previous.get("figures", {}).items() if k != "gallery"}
    figures.setdefault("load_part_command", previous.get("command"))
    for b in backends:  # a run of some sizes keeps the other sizes' rows of an earlier run
        for row in b["sizes"].values():
            row["command"] = command_line()
        old = next((x for x in previous.get("figures", {}).get("gallery", {}).get("backends", [])
                    if x["backend"] == b["backend"]), None)
        if old:
            b["sizes"] = {**old["sizes"], **b["sizes"]}
    backends += [x for x in previous.get("figures", {}).get("gallery", {}).get("backends", [])
                 if x["backend"] not in {b["backend"] for b in backends}]
    figures["gallery"] = {"backends": backends, "embeddings": "SYNTHETIC random unit vectors of the RecNet's "
                          f"output size ({rec.cfg.emb_dim})", "recnet": weights, "server_threads": args.threads,
                          "machine": f"{os.cpu_count()} shared cores, loopback, client and server on the same machine",
                          "load_average_end": os.getloadavg(), "sequential_requests": args.sequential,
                          "scheduling": scheduling()}
    result = envelope.finish(figures)
    md = ["| backend | entries | enrol p50 / p90 (HTTP) | identify p50 / p90 (HTTP) | in process: enrol / identify p50 "
          "| server start |", "|---|---|---|---|---|---|"]
    notes = []
    for b in backends:
        for size, r in b["sizes"].items():
            md.append(f"| {b['backend']} | {int(size):,} | {r['enrol_ms']['p50']:.1f} / {r['enrol_ms']['p90']:.1f} ms"
                      f" | {r['identify_ms']['p50']:.1f} / {r['identify_ms']['p90']:.1f} ms | "
                      f"{r['gallery_only_ms']['enrol']['p50']:.2f} / {r['gallery_only_ms']['identify']['p50']:.2f} ms"
                      f" | {r['server_start_seconds']:.1f} s |")
            if "concurrent_enrols" in r:
                c, k = r["concurrent_enrols"], r["sigkill_during_enrols"]
                notes.append(f"- {b['backend']} at {int(size):,}: 16 concurrent enrols {c['enrols_per_second']:.0f}/s "
                             f"({c['requests']} requests, {c['errors']} errors, {c['acknowledged_in_database']} of "
                             f"{c['acknowledged']} acknowledged in the database); SIGKILL of one of two workers "
                             f"during 16 concurrent enrols: {k['acknowledged']} acknowledged, "
                             f"{k['acknowledged_lost']} lost, {k['unanswered']} unanswered (in flight at the kill), "
                             f"{k['errors']} errors; two workers / one identify throughput "
                             f"{r['two_over_one_worker_throughput']:.2f} "
                             f"({r['identify_two_workers']['throughput_rps']:.0f} / "
                             f"{r['identify_one_worker']['throughput_rps']:.0f} req/s, 8 clients, median of "
                             f"rounds {r.get('identify_rounds_rps')}; {r.get('two_workers_cpu_note', '')}); "
                             f"enrolled through one, identified through the other: {r['cross_worker_identified']}/20")
    md += ["", *notes, "", f"SYNTHETIC unit embeddings ({rec.cfg.emb_dim}-d), RecNet {weights}, {args.threads} torch "
           f"thread(s), {os.cpu_count()} shared cores, load average at the end {os.getloadavg()[0]:.1f} "
           f"({scheduling()}); "
           f"regenerate: `{result['command']}`."]
    publish(args.out, result, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
