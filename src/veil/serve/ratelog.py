"""Log lines an attacker can trigger, at a bounded rate: at most a few per minute per kind, then a count.

Why: a flood of refused connections or failed handshakes produced one line (or one traceback) per
event, 160 MB of log in a minute (issue 24, finding 1), which fills the disk and buries the lines
that matter. Every kind of line (a logger and a message template) gets a small burst per interval;
what is held back is counted and reported with the next line of that kind, and a traceback is
kept only for the first line of a kind.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

DEFAULT_BURST = 5
DEFAULT_INTERVAL = 60.0


class RateLimiter:
    """Per-key budget of ``burst`` events per ``interval`` seconds; counts what it refuses."""

    def __init__(self, burst: int = DEFAULT_BURST, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.interval, self.clock = burst, interval, clock
        self._windows: dict[object, tuple[float, int, int]] = {}  # key -> (window start, allowed, held back)
        self._lock = threading.Lock()

    def allow(self, key: object) -> tuple[bool, int]:
        """``(allowed, held_back)``: whether to log this event, and how many of its kind were held back before it."""
        now = self.clock()
        with self._lock:
            start, allowed, held = self._windows.get(key, (now, 0, 0))
            if now - start >= self.interval:
                start, allowed = now, 0
            if allowed < self.burst:
                self._windows[key] = (start, allowed + 1, 0)
                return True, held
            self._windows[key] = (start, allowed, held + 1)
            return False, 0


def kind_of(message: str) -> str:
    """A message's kind: its first line without numbers (asyncio puts addresses, fds and times in its lines)."""
    return re.sub(r"\d+", "#", message.split("\n", 1)[0])[:120]


class RateLimitFilter(logging.Filter):
    """A logging filter applying a :class:`RateLimiter` per (logger, message template)."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RateLimiter()
        self._seen_traceback: set[object] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, kind_of(str(record.msg)))
        ok, held = self.limiter.allow(key)
        if not ok:
            return False
        if record.exc_info and key in self._seen_traceback:
            record.exc_info, record.exc_text = None, None  # one traceback per kind is enough
        elif record.exc_info:
            self._seen_traceback.add(key)
        if held:
            record.msg = f"{record.msg} ({held} similar line(s) held back)"
        return True


_events = RateLimiter()
_counts: dict[str, int] = {}


def limited_warning(logger: logging.Logger, key: str, template: str) -> None:
    """Count an event of kind ``key``; log ``template`` (``{n}``: events since the last line) within the budget."""
    _counts[key] = _counts.get(key, 0) + 1
    ok, _held = _events.allow(key)
    if ok:
        logger.warning(template.format(n=_counts.pop(key)))


NOISY_LOGGERS = ("asyncio", "uvicorn", "uvicorn.error", "veil.serve")


def install(limiter: RateLimiter | None = None) -> RateLimitFilter:
    """Put one rate-limiting filter on every logger a client can make the server write to; give veil.serve a handler."""
    flt = RateLimitFilter(limiter)
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(flt)
    ours = logging.getLogger("veil.serve")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("veil serve: %(levelname)s %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    return flt
