"""Connection floods against a Veil server, and a /health prober: what the tests and ``bench/fuzz.py`` attack it with.

Why here: the same attacker must drive the regression tests (small numbers, lowered limits) and the
benchmark campaign (issue 24's numbers), so it lives in one module. Three floods, from one source
address (the attacker's), each connection reopened at once when the server closes it:

- ``hold``: TCP connections that never send a byte (against TLS: never a ClientHello);
- ``half-body``: a request head with ``Content-Length: 1000`` and 10 bytes of its body.

The prober asks ``GET /health`` from *another* loopback address (127.0.0.2 by default): a legitimate
client, not the flooder, whose latency is what the targets bound.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from dataclasses import asdict, dataclass

HALF_BODY = b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" \
            b"Content-Length: 1000\r\n\r\n" + b"\0" * 10


@dataclass
class FloodCounts:
    opened: int = 0
    refused: int = 0  # closed by the server (or answered 503) before it got anything it wanted
    connect_errors: int = 0
    peak_held: int = 0


async def _one(host: str, port: int, kind: str, counts: FloodCounts, stop: float, held: list[int],
               source: str) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(source, 0)), 5)
        except (OSError, asyncio.TimeoutError):
            counts.connect_errors += 1
            await asyncio.sleep(0.05)
            continue
        counts.opened += 1
        held[0] += 1
        counts.peak_held = max(counts.peak_held, held[0])
        try:
            if kind == "half-body":
                writer.write(HALF_BODY)
                await writer.drain()
            left = stop - time.monotonic()
            data = await asyncio.wait_for(reader.read(4096), max(0.01, left))
            if data == b"" or data.startswith(b"HTTP/1.1 503"):
                counts.refused += 1
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            held[0] -= 1
            writer.close()


async def flood(host: str, port: int, kind: str, connections: int, seconds: float,
                source: str = "127.0.0.1") -> FloodCounts:
    """Hold ``connections`` connections of ``kind`` for ``seconds``, reopening each as soon as it closes."""
    counts, held = FloodCounts(), [0]
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_one(host, port, kind, counts, stop, held, source) for _ in range(connections)))
    return counts


def probe_health(url: str, seconds: float, every: float = 0.25, source: str = "127.0.0.2",
                 verify: ssl.SSLContext | bool = True, timeout: float = 5.0) -> list[tuple[float, int]]:
    """``(latency s, status)`` of ``GET /health`` every ``every`` s from ``source``; status 0 when it failed."""
    import httpx

    out: list[tuple[float, int]] = []
    stop = time.monotonic() + seconds
    transport = httpx.HTTPTransport(local_address=source, verify=verify)
    with httpx.Client(transport=transport, timeout=timeout) as client:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                status = client.get(url + "/health", headers={"Connection": "close"}).status_code
            except httpx.HTTPError:
                status = 0
            out.append((time.perf_counter() - t0, status))
            time.sleep(max(0.0, every - (time.perf_counter() - t0)))
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def main(argv: list[str] | None = None) -> int:
    """``python -m veil.serve.flooding HOST PORT KIND CONNECTIONS SECONDS``: one flood, its counts as JSON on stdout."""
    host, port, kind, connections, seconds = (argv or sys.argv[1:])[:5]
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker is not the one short of descriptors
    except (ImportError, ValueError, OSError):  # pragma: no cover
        pass
    counts = asyncio.run(flood(host, int(port), kind, int(connections), float(seconds)))
    print(json.dumps(asdict(counts)))
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
