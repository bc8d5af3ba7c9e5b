"""The outbox: durable queue, leases, retries with backoff, dead messages, the worker loop.

Delivery goes to a real SMTP server on loopback (aiosmtpd), stopped and started to play an outage.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from consent_widget import db, outbox
from consent_widget.models import OutboxMessage, utcnow


@pytest.fixture
def app_config(app_config, smtp_server):
    """Every app of this module sends to the test SMTP server."""
    app_config["MAIL_URL"] = smtp_server.url
    return app_config


def queue_emails(app, count: int) -> list[str]:
    """Queue ``count`` distinct emails in one transaction; return their Message-IDs."""
    ids = []
    with app.app_context():
        with db.transaction() as session:
            for n in range(count):
                message = EmailMessage(policy=SMTP)
                message["From"] = "no-reply@consent.test"
                message["To"] = f"supporter{n}@example.test"
                message["Subject"] = f"Message {n}"
                message["Message-ID"] = make_msgid(domain="consent.test")
                message.set_content(f"Body {n}")
                outbox.enqueue(session, kind="email", recipient=f"supporter{n}@example.test",
                               payload=message.as_string())
                ids.append(message["Message-ID"])
    return ids


def rows(app) -> list[OutboxMessage]:
    """Every outbox row, freshly read."""
    with app.app_context():
        return db.session().scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def test_enqueued_message_is_rolled_back_with_its_transaction(app):
    with app.app_context():
        with pytest.raises(RuntimeError):
            with db.transaction() as session:
                outbox.enqueue(session, kind="email", recipient="a@example.test", payload="x")
                raise RuntimeError("the event failed")
    assert rows(app) == []


def test_enqueue_refuses_a_kind_no_sender_knows(app):
    with app.app_context():
        with pytest.raises(ValueError, match="no sender"):
            outbox.enqueue(db.session(), kind="fax", recipient="+33", payload="x")


def test_due_messages_are_sent_once_and_marked_sent(app, smtp_server):
    ids = queue_emails(app, 2)
    assert outbox.deliver_due(app) == {"sent": 2, "retried": 0, "dead": 0}
    assert sorted(smtp_server.message_ids()) == sorted(ids)
    assert smtp_server.envelopes[0].rcpt_tos == ["supporter0@example.test"]
    for row in rows(app):
        assert (row.status, row.attempts, row.claimed_until) == ("sent", 1, None)
        assert row.sent_at is not None
    assert outbox.deliver_due(app) == {"sent": 0, "retried": 0, "dead": 0}
    assert len(smtp_server.messages) == 2


def test_messages_survive_an_smtp_outage_and_are_delivered_exactly_once(app, smtp_server):
    ids = queue_emails(app, 3)
    smtp_server.stop()
    before = utcnow()
    assert outbox.deliver_due(app) == {"sent": 0, "retried": 3, "dead": 0}
    for row in rows(app):
        assert (row.status, row.attempts, row.claimed_until) == ("pending", 1, None)
        assert row.next_attempt_at > before
        assert "ConnectionRefusedError" in row.last_error
    # Still down, and not yet due: nothing is even tried.
    assert outbox.deliver_due(app) == {"sent": 0, "retried": 0, "dead": 0}

    smtp_server.start()
    later = utcnow() + timedelta(seconds=app.config["OUTBOX_BACKOFF_BASE"] + 1)
    assert outbox.deliver_due(app, now=later) == {"sent": 3, "retried": 0, "dead": 0}
    assert Counter(smtp_server.message_ids()) == Counter(ids)
    assert [(row.status, row.attempts) for row in rows(app)] == [("sent", 2)] * 3

    assert outbox.deliver_due(app, now=later + timedelta(days=1)) == {
        "sent": 0, "retried": 0, "dead": 0}
    assert len(smtp_server.messages) == 3


def test_two_workers_at_once_never_send_a_message_twice(app, smtp_server):
    ids = queue_emails(app, 30)
    start = threading.Barrier(2)
    results = []

    def worker():
        start.wait()
        results.append(outbox.deliver_due(app))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(result["sent"] for result in results) == 30
    assert Counter(smtp_server.message_ids()) == Counter(ids)
    assert max(Counter(smtp_server.message_ids()).values()) == 1


def test_a_claimed_message_is_not_claimed_again_until_its_lease_expires(app):
    queue_emails(app, 3)
    now = utcnow()
    factory = app.extensions["consent_db"]
    with factory() as first, factory() as second:
        assert len(outbox.claim_due(first, now, 10)) == 3
        assert outbox.claim_due(second, now, 10) == []
        assert outbox.claim_due(second, now + outbox.LEASE - timedelta(seconds=1), 10) == []
        again = outbox.claim_due(second, now + outbox.LEASE + timedelta(seconds=1), 10)
    assert [claim.attempts for claim in again] == [2, 2, 2]


def test_a_message_claimed_by_a_crashed_worker_is_delivered_after_the_lease(app, smtp_server):
    ids = queue_emails(app, 1)
    crash_time = utcnow()
    with app.extensions["consent_db"]() as session:
        outbox.claim_due(session, crash_time, 10)  # ... and the worker dies before sending
    assert outbox.deliver_due(app, now=crash_time + timedelta(seconds=1))["sent"] == 0
    stats = outbox.deliver_due(app, now=crash_time + outbox.LEASE + timedelta(seconds=1))
    assert stats["sent"] == 1
    assert smtp_server.message_ids() == ids


def test_message_is_dead_after_max_attempts_and_never_retried(app, smtp_server):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    queue_emails(app, 1)
    smtp_server.stop()
    now = utcnow()
    outcomes = []
    for hour in range(3):
        outcomes.append(outbox.deliver_due(app, now=now + timedelta(hours=hour * 7)))
    assert outcomes == [{"sent": 0, "retried": 1, "dead": 0}] * 2 + [
        {"sent": 0, "retried": 0, "dead": 1}]
    [row] = rows(app)
    assert (row.status, row.attempts) == ("dead", 3)
    assert "ConnectionRefusedError" in row.last_error

    smtp_server.start()
    assert outbox.deliver_due(app, now=now + timedelta(days=30)) == {
        "sent": 0, "retried": 0, "dead": 0}
    assert smtp_server.messages == []


def test_permanent_refusal_of_the_recipient_is_dead_at_once(app, smtp_server):
    queue_emails(app, 2)
    smtp_server.refused.add("supporter0@example.test")
    assert outbox.deliver_due(app) == {"sent": 1, "retried": 0, "dead": 1}
    dead, sent = rows(app)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert "550" in dead.last_error
    assert sent.status == "sent"


def test_backoff_doubles_from_the_base_up_to_six_hours_with_jitter():
    rng = random.Random(7)
    for attempts, full in [(1, 30), (2, 60), (3, 120), (10, 15360), (11, 21600), (40, 21600)]:
        for _ in range(20):
            wait = outbox.backoff(attempts, 30, rng).total_seconds()
            assert full * 0.75 <= wait <= full
    waits = {outbox.backoff(5, 30, rng) for _ in range(20)}
    assert len(waits) > 1


def test_retries_of_a_failed_batch_are_spread_out(app, smtp_server):
    queue_emails(app, 10)
    smtp_server.stop()
    outbox.deliver_due(app)
    assert len({row.next_attempt_at for row in rows(app)}) > 1


def test_only_kinds_with_a_sender_are_claimed(app, smtp_server):
    with app.app_context():
        with db.transaction() as session:
            session.add(OutboxMessage(kind="sms", recipient="+33600000000",
                                      payload="{}", status="pending", attempts=0,
                                      next_attempt_at=utcnow(), created_at=utcnow()))
    assert outbox.deliver_due(app) == {"sent": 0, "retried": 0, "dead": 0}
    [row] = rows(app)
    assert (row.status, row.attempts) == ("pending", 0)


def test_deliver_due_respects_its_limit(app, smtp_server):
    queue_emails(app, 5)
    assert outbox.deliver_due(app, limit=2)["sent"] == 2
    assert outbox.deliver_due(app, limit=10)["sent"] == 3


def test_worker_delivers_until_stopped(app, smtp_server, capsys):
    stop = threading.Event()
    thread = threading.Thread(target=outbox.run_worker, args=(app, 0.05, stop))
    thread.start()
    try:
        ids = queue_emails(app, 2)
        deadline = utcnow() + timedelta(seconds=10)
        while len(smtp_server.messages) < 2 and utcnow() < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert sorted(smtp_server.message_ids()) == sorted(ids)
    output = capsys.readouterr().out
    assert "outbox worker: started" in output
    assert "sent" in output
    assert "outbox worker: stopped" in output


def test_worker_stops_on_sigterm_and_restores_the_previous_handler(app, smtp_server):
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    outbox.run_worker(app, interval=0.05)  # returns instead of the process being killed
    timer.join()
    assert signal.getsignal(signal.SIGTERM) is previous


def test_background_worker_starts_once_per_app(app, smtp_server):
    first = outbox.start_background_worker(app, interval=0.05)
    try:
        assert outbox.start_background_worker(app, interval=0.05) is first
        assert first.daemon and first.is_alive()
        ids = queue_emails(app, 1)
        deadline = utcnow() + timedelta(seconds=10)
        while not smtp_server.messages and utcnow() < deadline:
            threading.Event().wait(0.05)
        assert smtp_server.message_ids() == ids
    finally:
        outbox.stop_background_worker(app)
    assert not first.is_alive()


def test_app_refuses_nonsensical_outbox_settings(app_config):
    from consent_widget import create_app
    with pytest.raises(ValueError, match="OUTBOX_MAX_ATTEMPTS"):
        create_app({**app_config, "OUTBOX_MAX_ATTEMPTS": 0})
    with pytest.raises(ValueError, match="OUTBOX_BACKOFF_BASE"):
        create_app({**app_config, "OUTBOX_BACKOFF_BASE": 0})
