"""The durable outbox: messages queued in the database with the event they tell about, and the
worker that delivers them with retries and exponential backoff.

A message is written in the same transaction as its event (:func:`enqueue`), so an event is
never recorded without its notification, nor a notification sent for an event rolled back.
Delivery is at least once: a worker claims a row with a lease committed *before* sending, so two
workers never send the same row, and a worker that dies mid-send leaves the row claimable again
once the lease runs out. The price is that a crash between a successful send and recording it
sends that message again; emails keep their ``Message-ID`` (and webhooks their id) across
retries so receivers can tell.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from . import db, loaded, mail
from .models import OutboxMessage, utcnow

log = logging.getLogger(__name__)

PENDING, SENT, DEAD = "pending", "sent", "dead"

#: How long a claimed message is reserved for the worker sending it. It must outlast the slowest
#: send (an SMTP exchange is several round trips, each bounded by the transport's timeout), or a
#: second worker could claim the row while the first is still sending it.
LEASE = timedelta(minutes=5)

#: The longest wait between two attempts, whatever the number of failures.
MAX_BACKOFF = timedelta(hours=6)

_WORKER_KEY = "consent_outbox_worker"


class PermanentFailure(Exception):
    """The receiving end refused the message for good; retrying cannot succeed."""


@dataclass(frozen=True)
class Claim:
    """A message claimed for one delivery attempt: plain values, so sending needs no session."""

    id: int
    kind: str
    recipient: str
    payload: str
    attempts: int
    campaign_id: int | None
    created_at: datetime


def _send_email(app, claim: Claim) -> None:
    mail.transport_from_url(app.config["MAIL_URL"]).send(claim.recipient,
                                                         mail.message_bytes(claim.payload))


#: How each kind of message is delivered: ``sender(app, claim)`` returns on success and raises on
#: failure (:class:`PermanentFailure` to give up at once). Workers only claim kinds listed here,
#: so a worker of an older release leaves a newer kind of message to the workers that know it.
def _send_webhook(app, claim: Claim) -> None:
    from . import webhooks  # webhooks queues through this module, so it is imported late
    webhooks.deliver(app, claim)


SENDERS: dict[str, Callable[[object, Claim], None]] = {
    "email": _send_email,
    "webhook": _send_webhook,
}

#: Kinds retried for a length of time rather than a number of attempts. Standard Webhooks asks
#: for retries over days, since a platform's endpoint may be down over a weekend; the last
#: attempt is made at the end of the window, then the message is dead.
RETRY_WINDOWS: dict[str, timedelta] = {
    "webhook": timedelta(days=3),
}


_INSERT = insert(OutboxMessage.__table__).returning(OutboxMessage.__table__.c.id)


def enqueue(session: Session, *, kind: str, recipient: str, payload: str,
            campaign_id: int | None = None) -> OutboxMessage:
    """Queue a message in the caller's transaction (written, not committed); due at once.

    The row is written with one INSERT rather than through the ORM's unit of work, which costs
    several times more; the message returned is a copy, outside the session.
    """
    if kind not in SENDERS:
        raise ValueError(f"no sender for outbox messages of kind {kind!r}")
    now = utcnow()
    values = {"kind": kind, "recipient": recipient, "payload": payload,
              "campaign_id": campaign_id, "status": PENDING, "attempts": 0,
              "next_attempt_at": now, "claimed_until": None, "last_error": "",
              "created_at": now, "sent_at": None}
    [(message_id,)] = db.driver_write(session.connection(), _INSERT, values)
    return loaded.transient(OutboxMessage, {"id": message_id, **values})


def backoff(attempts: int, base: float, rng: random.Random | None = None) -> timedelta:
    """The wait after the ``attempts``-th failure: ``base * 2**(attempts-1)`` s, at most 6 h,
    shortened by up to a quarter at random so messages that failed together (an SMTP outage)
    do not all come back in the same second."""
    ceiling = MAX_BACKOFF.total_seconds()
    delay = min(ceiling, base * 2 ** min(attempts - 1, 32))
    return timedelta(seconds=delay - (rng or random).uniform(0, delay / 4))


def _due(now: datetime):
    """The rows a worker may claim at ``now``: pending, due, unleased, of a kind it can send."""
    return and_(OutboxMessage.status == PENDING,
                OutboxMessage.next_attempt_at <= now,
                or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                OutboxMessage.kind.in_(list(SENDERS)))


def claim_due(session: Session, now: datetime, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due messages for one attempt each, and commit the claim.

    Each row is taken by a conditional UPDATE that repeats the due test; a row another worker
    took in between matches nothing (rowcount 0) and is skipped. The attempt is counted here, so
    a message that crashes its worker still reaches the dead state.

    On PostgreSQL the candidates are read with ``FOR UPDATE SKIP LOCKED``, so concurrent workers
    pick different rows instead of queueing behind each other's locks; the conditional UPDATE
    stays as the guarantee. SQLite has no row locks (SQLAlchemy leaves the clause out): there
    every transaction starts with ``BEGIN IMMEDIATE``, so claims are serialised whole and the
    conditional UPDATE alone keeps two workers off the same row.
    """
    # A few more candidates than needed, so that rows lost to a concurrent worker do not leave
    # this batch short while other rows are due.
    candidates = session.scalars(select(OutboxMessage.id).where(_due(now))
                                 .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                                 .limit(limit + 10)
                                 .with_for_update(skip_locked=True)).all()
    claimed = []
    for message_id in candidates:
        if len(claimed) == limit:
            break
        result = session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id, _due(now))
            .values(claimed_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:
            claimed.append(message_id)
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(claimed))
                           .order_by(OutboxMessage.id)
                           .execution_options(populate_existing=True)).all()
    claims = [Claim(id=row.id, kind=row.kind, recipient=row.recipient, payload=row.payload,
                    attempts=row.attempts, campaign_id=row.campaign_id,
                    created_at=row.created_at) for row in rows]
    session.commit()
    return claims


def _describe(exc: BaseException) -> str:
    # Exceptions of the transports carry the server's reply, never the MAIL_URL or its password.
    return f"{type(exc).__name__}: {exc}"[:1000]


def _record_sent(session: Session, claim: Claim, now: datetime) -> None:
    session.execute(update(OutboxMessage).where(OutboxMessage.id == claim.id)
                    .values(status=SENT, sent_at=now, claimed_until=None, last_error="")
                    .execution_options(synchronize_session=False))
    session.commit()


def _is_last_attempt(claim: Claim, now: datetime, max_attempts: int) -> bool:
    window = RETRY_WINDOWS.get(claim.kind)
    if window is None:
        return claim.attempts >= max_attempts
    return now >= claim.created_at + window


def _next_attempt(claim: Claim, now: datetime, base: float) -> datetime:
    due = now + backoff(claim.attempts, base)
    window = RETRY_WINDOWS.get(claim.kind)
    return due if window is None else min(due, claim.created_at + window)


def _record_failure(session: Session, claim: Claim, now: datetime, error: str, *,
                    dead: bool, base: float) -> None:
    values = {"claimed_until": None, "last_error": error}
    if dead:
        values["status"] = DEAD
    else:
        values["next_attempt_at"] = _next_attempt(claim, now, base)
    # Only a pending row: if our lease ran out and another worker has since sent it, keep "sent".
    session.execute(update(OutboxMessage)
                    .where(OutboxMessage.id == claim.id, OutboxMessage.status == PENDING)
                    .values(**values).execution_options(synchronize_session=False))
    session.commit()


def deliver_due(app, now: datetime | None = None, limit: int = 100) -> dict:
    """Deliver up to ``limit`` due messages; return ``{"sent", "retried", "dead"}`` counts.

    Messages are claimed one at a time, each just before it is sent, so a lease only has to
    outlast one send however long the batch takes. ``now`` fixes the clock (tests); by default
    the real time is read at each step.
    """
    clock = (lambda: now) if now is not None else utcnow
    max_attempts = int(app.config["OUTBOX_MAX_ATTEMPTS"])
    base = float(app.config["OUTBOX_BACKOFF_BASE"])
    stats = {"sent": 0, "retried": 0, "dead": 0}
    with app.app_context():
        session = app.extensions["consent_db"]()
        try:
            for _ in range(limit):
                claims = claim_due(session, clock(), 1)
                if not claims:
                    break
                claim = claims[0]
                try:
                    SENDERS[claim.kind](app, claim)
                except Exception as exc:  # whatever breaks a send, the message must survive it
                    dead = isinstance(exc, PermanentFailure) or \
                        _is_last_attempt(claim, clock(), max_attempts)
                    _record_failure(session, claim, clock(), _describe(exc), dead=dead, base=base)
                    stats["dead" if dead else "retried"] += 1
                    log.warning("outbox message %s (%s) attempt %s failed%s: %s", claim.id,
                                claim.kind, claim.attempts, ", now dead" if dead else "",
                                _describe(exc))
                else:
                    _record_sent(session, claim, clock())
                    stats["sent"] += 1
        finally:
            session.close()
    return stats


def run_worker(app, interval: float = 2.0, stop_event: threading.Event | None = None,
               limit: int = 100, jobs=None) -> None:
    """Deliver due messages every ``interval`` seconds until ``stop_event`` is set, Ctrl-C or
    SIGTERM (which lets the current batch finish); print one line per batch that did something.

    ``jobs``, when given, is called with the app every ``JOBS_INTERVAL`` seconds (the scheduled
    jobs of :mod:`consent_widget.lifecycle`), starting at once.
    """
    stop_event = stop_event or threading.Event()
    next_jobs = time.monotonic()
    # SIGTERM only raises this flag: a signal handler calling stop_event.set() could deadlock on
    # the Event's lock if the signal lands while this thread holds it inside wait().
    terminated = []
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    print(f"outbox worker: started, polling every {interval:g} s", flush=True)
    try:
        while not (stop_event.is_set() or terminated):
            if jobs is not None and time.monotonic() >= next_jobs:
                next_jobs = time.monotonic() + app.config["JOBS_INTERVAL"]
                try:
                    print(f"outbox worker: scheduled jobs: {jobs(app)}", flush=True)
                except Exception:  # a failed run is tried again at the next interval
                    log.exception("outbox worker: scheduled jobs failed")
            try:
                stats = deliver_due(app, limit=limit)
            except Exception:  # a database hiccup must not end the worker
                log.exception("outbox worker: batch failed; trying again in %s s", interval)
                stats = {}
            if any(stats.values()):
                print("outbox worker: " + ", ".join(f"{n} {what}" for what, n in stats.items()),
                      flush=True)
            if sum(stats.values()) < limit:
                stop_event.wait(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        print("outbox worker: stopped", flush=True)


def start_background_worker(app, interval: float = 2.0, jobs=None) -> threading.Thread:
    """Run the worker in a daemon thread of this process, once per app; return the thread.

    For the development server only (``DEV_WORKER``). The caller decides when: under the
    Werkzeug reloader, only in the serving child (``WERKZEUG_RUN_MAIN == "true"``), or the
    watching parent would send every email too.
    """
    running = app.extensions.get(_WORKER_KEY)
    if running is not None and running[0].is_alive():
        return running[0]
    stop_event = threading.Event()
    thread = threading.Thread(target=run_worker, args=(app, interval, stop_event, 100, jobs),
                              name=f"outbox-worker-{os.getpid()}", daemon=True)
    app.extensions[_WORKER_KEY] = (thread, stop_event)
    thread.start()
    return thread


def stop_background_worker(app, timeout: float = 10.0) -> None:
    """Stop the thread started by :func:`start_background_worker`, if any, and wait for it."""
    running = app.extensions.pop(_WORKER_KEY, None)
    if running is not None:
        thread, stop_event = running
        stop_event.set()
        thread.join(timeout)


def init_app(app) -> None:
    """Check the outbox and mail settings when the app is built, so a typo in ``MAIL_URL`` fails
    at start rather than hours later in the worker. Starts nothing: see
    :func:`start_background_worker`."""
    mail.transport_from_url(app.config["MAIL_URL"])
    if int(app.config["OUTBOX_MAX_ATTEMPTS"]) < 1:
        raise ValueError("OUTBOX_MAX_ATTEMPTS must be at least 1")
    if float(app.config["OUTBOX_BACKOFF_BASE"]) <= 0:
        raise ValueError("OUTBOX_BACKOFF_BASE must be a positive number of seconds")
