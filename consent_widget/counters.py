"""Where rate-limit counters live: fixed windows, each counted with one call.

A limit's counter is hit once per request, and the answer must say how many are left and when
the window ends (the ``RateLimit-*`` headers), so every kind of counter here answers both in
one call, :meth:`hit`: under one lock in this process, in one round trip to Redis.

- :class:`ProcessCounters` (``memory://``): a dict in this process. ``limits``' own memory
  storage starts a thread every 10 ms while requests arrive, to sweep every counter it holds;
  the per-address signup limit keeps a counter per address for an hour, so on a busy evening
  that sweep grows to half a core per worker. These counters are swept instead by the request
  that finds a sweep due, at most once a second, and only as far as the counters that have
  expired: those of one window length expire in the order they started.
- :class:`RedisCounters` (``redis://``, ``rediss://``, ``redis+unix://``): shared by every
  instance pointed at one Redis; a Lua script increments, starts the window and reads its time
  to live in one round trip.
- :class:`StorageCounters`: any other storage ``limits`` knows (memcached, ...), with its
  increment and its expiry read as two calls.
- :class:`FailoverCounters`: a shared kind that falls back to this process's counters while
  it does not answer, rather than turn signups and withdrawals away with errors.
"""
from __future__ import annotations

import logging
import threading
import time

from limits.storage import storage_from_string

#: Seconds between two sweeps of expired counters; a counter is never read past its expiry.
SWEEP_INTERVAL = 1.0
#: Seconds a shared storage that failed is left alone before it is tried again: a Redis that
#: does not answer costs one request in this long its timeout, not every request.
RETRY_INTERVAL = 5.0
#: A Redis that stops answering must cost a request a second at most, not hang it.
REDIS_TIMEOUT = 1.0
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
log = logging.getLogger(__name__)


class ProcessCounters:
    """Fixed-window counters in a dict, each with its expiry, swept as they expire."""

    def __init__(self):
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        # Per window length, counters in the order their windows started, which for one
        # length is the order they expire: a sweep stops at the first one still running.
        self._by_window: dict[float, dict[str, float]] = {}
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def hit(self, key: str, window: int, amount: int = 1) -> tuple[int, float]:
        """Count ``amount`` against ``key`` in its window of ``window`` seconds (started now if
        none runs): the new count, and when the window ends in seconds since the epoch."""
        with self._lock:
            now = time.time()  # under the lock: counters of one window start in time order
            if now >= self._next_sweep:
                self._sweep(now)
            expires = self._expiries.get(key, 0.0)
            if expires <= now:
                self._forget(key)
                self._counts[key] = 0
                expires = self._expiries[key] = self._by_window.setdefault(window, {})[key] = (
                    now + window)
            count = self._counts[key] = self._counts[key] + amount
            return count, expires

    def count(self) -> int:
        """How many counters are kept."""
        with self._lock:
            return len(self._counts)

    def _forget(self, key: str) -> None:
        expires = self._expiries.pop(key, None)
        self._counts.pop(key, None)
        if expires is not None:
            for window in self._by_window.values():
                if window.pop(key, None) is not None:
                    break

    def _sweep(self, now: float) -> None:
        for window in self._by_window.values():
            expired = []
            for key, expires in window.items():
                if expires > now:
                    break
                expired.append(key)
            for key in expired:
                del window[key]
                self._counts.pop(key, None)
                self._expiries.pop(key, None)
        self._next_sweep = now + SWEEP_INTERVAL


#: Increment, start the window on the first hit, and read what is left of it: one round trip.
#: A key found without a time to live (left by a crash between the two writes) gets one.
_REDIS_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""


class RedisCounters:
    """Fixed-window counters in Redis, shared by every instance that uses the same server."""

    def __init__(self, url: str):
        # Imported here: the client brings asyncio and its own modules, some 20 MB of each
        # worker's memory, which a service counting in memory has no use for.
        import redis
        self.errors = (redis.RedisError, OSError)
        # limits' notation for a socket path; redis-py's is unix://.
        url = "unix://" + url.removeprefix("redis+unix://") if url.startswith(
            "redis+unix://") else url
        self._client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                            socket_timeout=REDIS_TIMEOUT)
        self._script = self._client.register_script(_REDIS_HIT)

    def hit(self, key: str, window: int, amount: int = 1) -> tuple[int, float]:
        """As :meth:`ProcessCounters.hit`, counted in Redis."""
        count, ttl_ms = self._script(keys=[key], args=[amount, int(window * 1000)])
        return int(count), time.time() + int(ttl_ms) / 1000


class StorageCounters:
    """Fixed-window counters in any other storage ``limits`` knows, read in two calls."""

    errors = (Exception,)  # each storage has its own; none may turn a signup away

    def __init__(self, url: str):
        self._storage = storage_from_string(url)

    def hit(self, key: str, window: int, amount: int = 1) -> tuple[int, float]:
        """As :meth:`ProcessCounters.hit`, counted in the storage."""
        count = self._storage.incr(key, window, amount=amount)
        return count, self._storage.get_expiry(key)


class FailoverCounters:
    """A shared storage, and this process's counters while it does not answer."""

    def __init__(self, shared, local: ProcessCounters):
        self.shared, self.local = shared, local
        self._retry_at = 0.0

    def hit(self, key: str, window: int, amount: int = 1) -> tuple[int, float]:
        """As :meth:`ProcessCounters.hit`, in the shared storage when it answers."""
        if time.monotonic() >= self._retry_at:
            try:
                return self.shared.hit(key, window, amount)
            except self.shared.errors as exc:
                self._retry_at = time.monotonic() + RETRY_INTERVAL
                log.warning("rate-limit storage unreachable (%s); counting in this process "
                            "for %.0f s", type(exc).__name__, RETRY_INTERVAL)
        return self.local.hit(key, window, amount)


def from_url(url: str):
    """The counters ``RATELIMIT_STORAGE_URL`` names: this process's for ``memory://``, a
    shared storage with this process's as its fallback otherwise."""
    if url == "memory://":
        return ProcessCounters()
    shared = RedisCounters(url) if url.startswith(REDIS_SCHEMES) else StorageCounters(url)
    return FailoverCounters(shared, ProcessCounters())
