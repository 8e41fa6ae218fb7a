"""Failed authentications, throttled per client address and logged (issue 24, finding 3).

Why: 3,000 wrong tokens on one connection were all evaluated (663 guesses/s), with no 429 and no log
line. Each client address has a token bucket of failures (``burst`` at once, refilled at ``rate``
per second); only *failures* take from it, so a valid client is never slowed by its own traffic.
While an address's bucket is empty its requests are refused with 429 and ``Retry-After`` before
their credential is looked at, so a guess made then tells the guesser nothing. Each failure is
logged with the client id it named (never the secret; a malformed id is not echoed) through the
rate-limited ``veil.serve`` logger.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("veil.serve")
CLIENT_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
MAX_TRACKED = 100_000  # addresses remembered at once; the fullest buckets are forgotten first


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    failures: int = 0


class AuthThrottle:
    """Per-address token bucket of failed authentications."""

    def __init__(self, burst: int = 20, rate: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst, self.rate, self.clock = burst, rate, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _refill(self, address: str, now: float) -> _Bucket:
        b = self._buckets.get(address)
        if b is None:
            return _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
        b.stamp = now
        return b

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` when it may now."""
        with self._lock:
            b = self._refill(address, self.clock())
            if b.tokens >= 1.0:
                return None
            return max(1, math.ceil((1.0 - b.tokens) / self.rate))

    def failed(self, address: str, client: str) -> None:
        """Take one token from ``address``'s bucket and log the failure (client id only)."""
        with self._lock:
            now = self.clock()
            b = self._refill(address, now)
            b.tokens = max(0.0, b.tokens - 1.0)
            b.failures += 1
            if address not in self._buckets and len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            self._buckets[address] = b
            failures = b.failures
        shown = repr(client) if CLIENT_ID.match(client) else "(malformed client id)"
        log.warning("authentication failed for client %s from %s (%d failure(s) from this address)",
                    shown, address, failures)

    def _forget_full(self, now: float) -> None:
        for address in [a for a, b in self._buckets.items()
                        if min(float(self.burst), b.tokens + (now - b.stamp) * self.rate) >= self.burst]:
            del self._buckets[address]
