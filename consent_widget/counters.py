"""Rate-limit counters kept in this process, for Flask-Limiter's fixed windows.

``limits``' own memory storage starts a thread every 10 ms while requests arrive, to sweep
every counter it holds. The per-address signup limit keeps a counter per address for an hour,
so on a busy evening that sweep grows to half a core per worker. These counters are swept
instead by the request that finds a sweep due, at most once a second, and only as far as the
counters that have expired: those of one window length expire in the order they started.
Registered with ``limits`` under the ``consent-process://`` scheme (its documented way to add a
storage); :mod:`consent_widget.limits` uses it for ``memory://``.
"""
from __future__ import annotations

import threading
import time

from limits.storage import Storage

SCHEME = "consent-process"
#: Seconds between two sweeps of expired counters; a counter is never read past its expiry.
SWEEP_INTERVAL = 1.0


class ProcessCounters(Storage):
    """Fixed-window counters in a dict, each with its expiry, swept as they expire."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self._counts: dict[str, int] = {}
        self._expiries: dict[str, float] = {}
        # Per window length, counters in the order their windows started, which for one
        # length is the order they expire: a sweep stops at the first one still running.
        self._by_window: dict[float, dict[str, float]] = {}
        self._next_sweep = 0.0
        self._lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        """Nothing here fails the way a server does; required by ``limits``."""
        return RuntimeError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` to the counter of ``key``, starting a window of ``expiry`` seconds
        when it has none running; return the new count."""
        with self._lock:
            now = time.time()  # under the lock: counters of one window start in time order
            if now >= self._next_sweep:
                self._sweep(now)
            if self._expiries.get(key, 0.0) <= now:
                self._forget(key)
                self._counts[key] = 0
                self._expiries[key] = self._by_window.setdefault(expiry, {})[key] = now + expiry
            self._counts[key] += amount
            return self._counts[key]

    def get(self, key: str) -> int:
        """The count of ``key`` in its running window, 0 when none runs."""
        with self._lock:
            if self._expiries.get(key, 0.0) <= time.time():
                return 0
            return self._counts.get(key, 0)

    def get_expiry(self, key: str) -> float:
        """When the window of ``key`` ends (now when none runs), in seconds since the epoch."""
        with self._lock:
            now = time.time()
            return max(self._expiries.get(key, now), now)

    def check(self) -> bool:
        """Always reachable: the counters are in this process."""
        return True

    def reset(self) -> int:
        """Forget every counter; return how many there were."""
        with self._lock:
            count = len(self._counts)
            self._counts.clear()
            self._expiries.clear()
            self._by_window.clear()
            return count

    def clear(self, key: str) -> None:
        """Forget the counter of ``key``."""
        with self._lock:
            self._forget(key)

    def count(self) -> int:
        """How many counters are kept (Flask-Limiter tests a storage's truth: no ``__len__``)."""
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
