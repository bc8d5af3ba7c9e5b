"""The benchmarks' reference apps are source texts run by gunicorn only when a benchmark runs;
these tests keep them from breaking unnoticed between runs."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
from limits.storage import storage_from_string

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def benches():
    sys.path.insert(0, str(BENCH))
    try:
        yield [importlib.import_module(name) for name in ("bench_api", "bench_signups")]
    finally:
        sys.path.remove(str(BENCH))


def test_every_reference_app_is_valid_python(benches):
    for bench in benches:
        for name in ("MINIMAL_APP", "FLOOR_APP", "LIMITER_FLOOR_APP"):
            compile(getattr(bench, name), f"{bench.__name__}.{name}", "exec")


def test_the_flask_limiter_floors_name_a_storage_the_limits_library_has(benches):
    """The first floors count through Flask-Limiter, whose storage is the ``limits`` library's:
    a storage URL it does not know stops that floor's gunicorn before it serves anything."""
    for bench in benches:
        urls = re.findall(r'storage_uri=\\?"([^"\\]+)\\?"', bench.LIMITER_FLOOR_APP)
        assert urls, bench.__name__
        for url in urls:
            storage_from_string(url)  # raises ConfigurationError for an unknown scheme
