"""Probes for the process manager and the load balancer.

``/healthz`` says the process answers (liveness: restart it if not). ``/readyz`` says it can do
its job (readiness: send it traffic only if so): the database answers, its schema is at the
migration head the code expects, and a signing key exists. Readiness only looks: it never creates
a key or migrates, so a probe can never change what it is checking. Both answer JSON and neither
reveals more than which check failed.
"""
from __future__ import annotations

import logging
from functools import lru_cache

from flask import Blueprint, jsonify
from sqlalchemy import select, text

from . import db, migrate
from .models import SigningKey

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _head() -> str:
    # The scripts ship with the code: the head cannot change while the process runs.
    return migrate.head()


def _database(engine) -> str | None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return None


def _migrations(engine) -> str | None:
    current, head = migrate.current(engine), _head()
    return None if current == head else "the database schema is not at the code's migration head"


def _signing_key(engine) -> str | None:
    with engine.connect() as connection:
        found = connection.execute(select(SigningKey.kid)
                                   .where(SigningKey.retired_at.is_(None)).limit(1)).first()
    return None if found is not None else "no current signing key (consent-widget keys rotate)"


#: Checked in this order; once the database is unreachable the others cannot say anything.
CHECKS = (("database", _database), ("migrations", _migrations), ("signing_key", _signing_key))


def readiness() -> dict[str, str]:
    """Run every check; return ``{name: "ok" or what is wrong}``."""
    engine = db.engine()
    results = {}
    for name, check in CHECKS:
        if results.get("database", "ok") != "ok":
            results[name] = "not checked: the database is unreachable"
            continue
        try:
            problem = check(engine)
        except Exception:  # what failed goes to the log; the probe's caller gets no database text
            log.exception("readiness check %s failed", name)
            problem = "unreachable" if name == "database" else "could not be checked"
        results[name] = problem or "ok"
    return results


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 when every check passes, else 503 naming the checks that failed."""
    # A probe only reads: it must not queue behind SQLite's write lock and time out under load.
    db.read_only()
    checks = readiness()
    failing = sorted(name for name, result in checks.items() if result != "ok")
    body = {"status": "not_ready" if failing else "ready", "checks": checks}
    if failing:
        body["failing"] = failing
    return jsonify(body), 503 if failing else 200


def init_app(app) -> None:
    """Serve the probes."""
    app.register_blueprint(bp)
