"""The in-process rate-limit counters (consent_widget.counters) behind ``memory://``."""
from __future__ import annotations

import threading

import pytest

from consent_widget import counters


@pytest.fixture
def clock(monkeypatch):
    """A clock the test moves by hand."""
    now = [1_000_000.0]
    monkeypatch.setattr(counters.time, "time", lambda: now[0])
    return now


def test_a_window_counts_until_it_expires_then_starts_again(clock):
    store, start = counters.ProcessCounters(), clock[0]
    assert [store.hit("ip", 60) for _ in range(3)] == [(n, start + 60) for n in (1, 2, 3)]
    clock[0] += 30
    assert store.hit("ip", 60, amount=2) == (5, start + 60)
    clock[0] += 30  # the window is over: a new one starts with this hit
    assert store.hit("ip", 60) == (1, start + 120)
    assert store.hit("other", 3600) == (1, start + 3660)  # each key has its own window


def test_expired_counters_are_swept_without_a_thread(clock):
    threads = threading.active_count()
    store = counters.ProcessCounters()
    for n in range(1000):
        store.hit(f"email-{n}", 3600)
    store.hit("ip", 60)
    clock[0] += 61
    store.hit("other", 60)  # a sweep is due: the minute's counter goes, the hour's stay
    assert store.count() == 1001
    assert store.hit("email-5", 3600)[0] == 2 and store.hit("ip", 60)[0] == 1
    clock[0] += 3600
    store.hit("other", 60)
    assert store.count() == 1
    assert threading.active_count() == threads


def test_the_app_counts_in_this_process_with_them_by_default(app, client):
    from consent_widget import limits
    assert client.post("/oauth/token", data={"grant_type": "client_credentials"}
                       ).status_code == 401
    counted = app.extensions[limits._COUNTERS]
    assert isinstance(counted, counters.ProcessCounters) and counted.count() == 1


class _Flaky:
    """A shared storage that is down until told otherwise, counting the calls it gets."""

    errors = (OSError,)

    def __init__(self):
        self.down, self.calls = True, 0

    def hit(self, key, window, amount=1):
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("down")
        return 41 + amount, 1e12


def test_a_failed_storage_is_left_alone_then_tried_again(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(counters.time, "monotonic", lambda: now[0])
    shared = _Flaky()
    store = counters.FailoverCounters(shared, counters.ProcessCounters())
    # Down: counted in this process, and the storage is not asked again for a while.
    assert [store.hit("k", 60)[0] for _ in range(3)] == [1, 2, 3]
    assert shared.calls == 1
    shared.down = False
    now[0] += counters.RETRY_INTERVAL - 0.1
    assert store.hit("k", 60)[0] == 4 and shared.calls == 1
    now[0] += 0.1  # back in the shared storage once the interval is over
    assert store.hit("k", 60) == (42, 1e12) and shared.calls == 2


def test_memory_and_redis_urls_choose_their_counters():
    assert isinstance(counters.from_url("memory://"), counters.ProcessCounters)
    redis_backed = counters.from_url("redis://127.0.0.1:6379/0")
    assert isinstance(redis_backed, counters.FailoverCounters)
    assert isinstance(redis_backed.shared, counters.RedisCounters)


def test_an_app_counting_in_memory_never_loads_the_redis_client():
    # The client costs each worker some 6 MB of the 100 MB it may use.
    import subprocess
    import sys
    probe = ("import sys\nfrom consent_widget import create_app\n"
             "create_app({'SECRET_KEY': 'k' * 40, 'DATABASE_URL': 'sqlite://'})\n"
             "print('redis' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
