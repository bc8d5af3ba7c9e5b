"""gunicorn settings for ``gunicorn server:app``, read from this file by default.

Every value can be overridden on the command line (``--bind``, ``--workers``, ...), which wins
over this file, or with gunicorn's own environment variables (``WEB_CONCURRENCY``,
``GUNICORN_CMD_ARGS``). docs/deploy.md explains the choices and how to size them.
"""
import gc
import multiprocessing
import os

# Behind a TLS reverse proxy on the same host: listen on loopback only.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# The defaults depend on the database (bench/bench_signups.py measured both ways on each):
# - SQLite: a request never waits on the network, and writes take turns on one lock. One
#   single-threaded process per core keeps the cores busy; threads in a process only contend
#   for Python's interpreter lock, which made signups a quarter slower.
# - A database server: requests wait for its answers, and a few threads per process overlap
#   those waits more cheaply than more processes would (checks were a quarter faster).
# The reverse proxy buffers requests and answers (docs/deploy.md), so a single-threaded worker
# is never held by a slow client. Each process needs one database connection per thread (two for
# an API request beyond a single check): 2 * workers * threads must stay under the database's
# connection limit.
_ON_SQLITE = os.environ.get("CONSENT_DATABASE_URL", "sqlite").startswith("sqlite")
workers = int(os.environ.get("WEB_CONCURRENCY",
                             multiprocessing.cpu_count() * (1 if _ON_SQLITE else 2)))
threads = int(os.environ.get("GUNICORN_THREADS", 1 if _ON_SQLITE else 4))
worker_class = "sync" if threads == 1 else "gthread"

# The app is built once in the master and the workers are forked from it, sharing its memory
# pages until they write to them. create_app opens no connection, so no socket is shared.
preload_app = True

# A request that takes longer than this is stuck (the slowest, a batch check of 10,000 addresses,
# takes a few seconds): the master kills and replaces the worker. Its transaction is rolled back
# by the database when the connection drops, so nothing is half-written.
timeout = 30
# SIGTERM lets running requests finish for this long before the workers are killed.
graceful_timeout = 30
# With threads: how long an idle connection of the proxy is kept open (ignored without).
keepalive = 5

# Replace each worker after about this many requests, so that a slow leak never grows without
# bound; the jitter keeps the workers from restarting all at once. A replaced worker starts its
# in-memory rate-limit counters again: at a few hundred requests a second this is every few
# minutes per worker, rather than every half minute with 10,000.
max_requests = 100000
max_requests_jitter = 10000

# Trust X-Forwarded-Proto (https) only from the reverse proxy on this host.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# gunicorn's own messages (start, worker restarts, timeouts) to stderr; the app logs requests.
errorlog = "-"
loglevel = "info"


def when_ready(server):
    """Before the first worker is forked, put what the master holds out of the collector's reach.

    The advice of Python's ``gc`` documentation before a fork: a full collection in a worker would
    otherwise write to every object inherited from the master, copying the pages that hold them
    into that worker, so that little of the app's memory stayed shared.
    """
    if server.cfg.preload_app:  # otherwise the master holds no app and each worker loads its own
        gc.freeze()


def post_fork(_server, _worker):
    """Give each forked worker a connection pool of its own.

    With ``preload_app`` the engine was built in the master; ``dispose(close=False)`` drops the
    pool inherited by the fork without closing connections that are not this process's.
    """
    import server
    with server.app.app_context():
        from consent_widget import db
        db.engine().dispose(close=False)
