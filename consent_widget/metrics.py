"""Prometheus metrics at ``/metrics`` (prometheus-client).

- Requests by endpoint name (never the raw path, which would carry tokens and grow without end),
  method and status, and their duration.
- Check decisions by outcome, read from the API's answers.
- Signups, confirmations and withdrawals, reported by the ledger as it writes them
  (:func:`count_on_commit`) and counted when their transaction commits, whichever door they came
  in by (widget, link, CLI, API, worker); a rolled-back transaction counts nothing.
- The outbox's depth, oldest pending message, messages being retried after a failed delivery and
  dead ones, read from the database at scrape time: the worker is another process that serves
  no metrics, and the database is what every instance agrees on.

Under several gunicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory writable
by them all (before they start): each worker then writes its counters there and any worker's
``/metrics`` answers their sum (prometheus-client's multiprocess mode).
"""
from __future__ import annotations

import logging
import os
import time

from flask import Blueprint, Response, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Histogram, disable_created_metrics, generate_latest,
                               multiprocess)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import case, event, func, select
from sqlalchemy.orm import Session

from . import db, logs
from .models import OutboxMessage, utcnow
from .outbox import DEAD, PENDING, SENDERS

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)
# The ``_created`` series double every counter and say nothing a dashboard uses.
disable_created_metrics()


REQUESTS = Counter("consent_http_requests",
                   "HTTP requests answered, by endpoint, method and status.",
                   ["endpoint", "method", "status"])
DURATION = Histogram("consent_http_request_duration_seconds",
                     "Time to answer a request, by endpoint.", ["endpoint"])
DECISIONS = Counter("consent_check_decisions", "Consent checks answered, by outcome.",
                    ["allowed", "status"])
SIGNUPS = Counter("consent_signups", "Widget signups recorded (pending confirmation).")
CONFIRMATIONS = Counter("consent_confirmations", "Signups confirmed from the emailed link.")
WITHDRAWALS = Counter("consent_withdrawals", "Consents withdrawn, by purpose.", ["purpose"])

_PENDING_COUNTS = "consent_metrics_pending"


# --- domain counters, on commit ------------------------------------------------------------------

def count_on_commit(session: Session, counter: Counter, *labels: str) -> None:
    """Add one to ``counter`` (with ``labels``) when the session's transaction commits.

    The ledger calls it for what it writes; a transaction rolled back, or closed without a
    commit, counts nothing.
    """
    session.info.setdefault(_PENDING_COUNTS, []).append((counter, labels))


def _after_commit(session: Session) -> None:
    for metric, labels in session.info.pop(_PENDING_COUNTS, []):
        (metric.labels(*labels) if labels else metric).inc()


def _after_transaction_end(session: Session, transaction) -> None:
    # Whatever ended the outermost transaction without a commit (a rollback, or closing the
    # session) forgets what it noted; a savepoint's end changes nothing.
    if transaction.parent is None:
        session.info.pop(_PENDING_COUNTS, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_transaction_end", _after_transaction_end)


# --- requests and decisions ----------------------------------------------------------------------

#: (endpoint, method, status) -> the request counter's and duration histogram's children for
#: them. ``labels()`` checks and looks up its labels under a lock on every call, which cost more
#: than counting; the children never change once made. Bounded: methods are the client's.
_REQUEST_CHILDREN: dict[tuple, tuple] = {}
#: (allowed, status) -> the decision counter's child.
_DECISION_CHILDREN: dict[tuple, object] = {}
_CHILDREN_MAX = 1024


def _request_children(endpoint: str, method: str, status: int) -> tuple:
    key = (endpoint, method, status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = (REQUESTS.labels(endpoint, method, str(status)), DURATION.labels(endpoint))
        if len(_REQUEST_CHILDREN) < _CHILDREN_MAX:
            _REQUEST_CHILDREN[key] = children
    return children


def _count_request(response):
    served = request._get_current_object()
    requests, duration = _request_children(served.endpoint or "(no route)", served.method,
                                           response.status_code)
    requests.inc()
    started = logs.request_started()  # a hook of its own to note the time cost more than this
    if started is not None:
        duration.observe(time.perf_counter() - started)
    return response


def count_decisions(answers) -> None:
    """Count check answers (:class:`~consent_widget.state.StateView`) by outcome.

    Called by the API with the answers it is about to send, rather than read back from the
    response: parsing a 10,000-entry batch again would cost as much as answering it.
    """
    tally: dict[tuple[str, str], int] = {}
    for answer in answers:
        outcome = ("true" if answer.allowed else "false", answer.status)
        tally[outcome] = tally.get(outcome, 0) + 1
    for outcome, count in tally.items():
        child = _DECISION_CHILDREN.get(outcome)
        if child is None:
            child = _DECISION_CHILDREN[outcome] = DECISIONS.labels(*outcome)  # a few statuses
        child.inc(count)


# --- the outbox, at scrape time -------------------------------------------------------------

class OutboxCollector:
    """Reads the outbox's pending and dead messages from the database when scraped."""

    def __init__(self, session: Session):
        self.session = session

    def collect(self):
        """Yield the outbox gauges, by message kind."""
        messages = GaugeMetricFamily("consent_outbox_messages",
                                     "Messages in the outbox not delivered: pending (the queue's "
                                     "depth) or dead (given up).", labels=["kind", "status"])
        retrying = GaugeMetricFamily("consent_outbox_retrying_messages",
                                     "Pending messages whose last delivery attempt failed.",
                                     labels=["kind"])
        oldest = GaugeMetricFamily("consent_outbox_oldest_pending_age_seconds",
                                   "Age of the oldest pending message.", labels=["kind"])
        try:
            rows = self.session.execute(
                select(OutboxMessage.kind, OutboxMessage.status, func.count(),
                       func.min(OutboxMessage.created_at),
                       func.sum(case((OutboxMessage.last_error != "", 1), else_=0)))
                .where(OutboxMessage.status.in_((PENDING, DEAD)))
                .group_by(OutboxMessage.kind, OutboxMessage.status)).all()
        except Exception:  # the request metrics are still worth having while the database is down
            log.exception("metrics: the outbox could not be read")
            return
        # Every kind a worker delivers is reported, at zero when its queue is empty, so an alert
        # on the depth has a series to watch from the start.
        found = {(kind, status): (count, first, failing)
                 for kind, status, count, first, failing in rows}
        kinds = sorted(set(SENDERS) | {kind for kind, _status in found})
        now = utcnow()
        for kind in kinds:
            count, first, failing = found.get((kind, PENDING), (0, None, 0))
            messages.add_metric([kind, PENDING], count)
            messages.add_metric([kind, DEAD], found.get((kind, DEAD), (0,))[0])
            retrying.add_metric([kind], failing or 0)
            oldest.add_metric([kind], max(0.0, (now - first).total_seconds()) if first else 0.0)
        yield messages
        yield retrying
        yield oldest


def _process_registry():
    """The counters of this process, or of every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
def scrape():
    """The metrics in the Prometheus text format."""
    db.read_only()  # a scrape only reads: it must not compete with signups for the write lock
    outbox = CollectorRegistry()
    outbox.register(OutboxCollector(db.session()))
    body = generate_latest(_process_registry()) + generate_latest(outbox)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    """Count every request (its duration from the start :mod:`consent_widget.logs` notes: call
    after ``logs.init_app``) and serve ``/metrics``."""
    app.after_request(_count_request)
    app.register_blueprint(bp)
