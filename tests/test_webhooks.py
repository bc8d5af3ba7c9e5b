"""Webhooks: Standard Webhooks signatures, delivery from the outbox with retries for three days,
410, dead letters, redelivery, and two workers that never send the same attempt twice."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from consent_widget import db, events, ledger, outbox, webhooks
from consent_widget.models import (Campaign, OutboxMessage, Receipt, Subject, WebhookEndpoint,
                                   utcnow)
from conftest import run_json
from helpers import give, sign_up
from helpers import withdraw as withdraw_consents
from webhook_receiver import Receiver


@pytest.fixture
def receiver():
    """A running idempotent receiver; stopped after the test."""
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(runner, campaign, receiver):
    """The receiver registered for every event of the demo campaign."""
    created = run_json(runner, "webhook", "add", "demo", receiver.url)
    receiver.secret = created["secret"]
    return created


def webhook_rows(app):
    with app.app_context():
        return db.session().scalars(select(OutboxMessage).where(OutboxMessage.kind == "webhook")
                                    .order_by(OutboxMessage.id)).all()


def withdraw(app, email, network=None):
    return withdraw_consents(app, "demo", email, "social_matching", network)


def deliver_until_idle(app, now, horizon=timedelta(days=4)):
    """Run the worker, jumping the clock to each next due attempt, until nothing is pending or
    ``horizon`` has passed; return the clock."""
    end = now + horizon
    while now <= end:
        outbox.deliver_due(app, now=now)
        with app.app_context():
            due = db.session().scalar(select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.status == "pending"))
        if due is None:
            break
        now = max(now, due)
    return now


def test_events_are_signed_per_standard_webhooks(app, endpoint, receiver):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    outbox.deliver_due(app)
    [(webhook_id, headers)] = receiver.requests
    body = receiver.processed[webhook_id]
    assert body["type"] == "consent.given"
    with app.app_context():
        subject_id = db.session().scalars(select(Subject.public_id)).one()
        receipt_id = db.session().scalars(select(Receipt.id)).one()
    assert body["data"] == {"campaign": "demo", "subject_id": subject_id,
                            "email": "ana@example.test", "purpose": "social_matching",
                            "network": "facebook", "status": "given", "receipt_id": receipt_id}
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # The library computes the same signature as ours over the same content.
    payload = webhooks.encode(body)
    ts = int(headers["webhook-timestamp"])
    assert Webhook(endpoint["secret"]).sign(webhook_id, _dt(ts), payload.decode()) \
        == webhooks.signature(endpoint["secret"], webhook_id, ts, payload)


def _dt(timestamp):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def test_a_receiver_with_another_secret_rejects_and_the_event_is_retried(app, endpoint, receiver):
    receiver.secret = webhooks.new_secret()  # as if our secret had leaked and been replaced
    give(app, "demo", "ana@example.test", networks=["facebook"])
    assert outbox.deliver_due(app)["retried"] == 1
    assert receiver.rejected == 1 and receiver.processed == {}
    [row] = webhook_rows(app)
    assert (row.status, row.last_error) == ("pending", "DeliveryFailed: HTTP 401")


def test_webhook_id_is_the_feed_id_and_filters_apply(app, runner, receiver, campaign):
    only_withdrawals = run_json(runner, "webhook", "add", "demo", receiver.url,
                                "--event", "consent.withdrawn")
    receiver.secret = only_withdrawals["secret"]
    give(app, "demo", "ana@example.test", networks=["facebook", "linkedin"])
    sign_up(app, "demo", "bob@example.test", networks=["facebook"])  # requests stay private
    withdraw(app, "ana@example.test", "facebook")
    outbox.deliver_due(app)
    assert [body["type"] for body in receiver.processed.values()] == ["consent.withdrawn"]
    with app.app_context():
        campaign_row = db.session().get(Campaign, campaign.id)
        feed, _ = events.feed(db.session(), campaign_row, 0, 100)
    assert list(receiver.processed) == [e["id"] for e in feed if e["type"] == "consent.withdrawn"]


def test_nothing_is_queued_when_the_ledger_transaction_rolls_back(app, endpoint):
    signup = sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    with app.app_context():
        session = db.session()
        from consent_widget.models import Signup
        row = session.scalars(select(Signup).where(Signup.public_id == signup)).one()
        ledger.confirm(session, session.get(Campaign, row.campaign_id), row)
        assert len(session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook")).all()) == 1
        session.rollback()
    assert webhook_rows(app) == []


def test_endpoints_changed_within_a_transaction_are_seen_by_its_next_events(app, campaign,
                                                                            receiver):
    """The active endpoints are read once per transaction; what changes them is seen at once."""
    first, second = sign_up(app, "demo", "ana@example.test", newsletter=True), \
        sign_up(app, "demo", "ben@example.test", newsletter=True)
    from consent_widget.models import Signup
    with app.app_context():
        with db.transaction() as session:
            demo = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            signups = {row.public_id: row for row in session.scalars(select(Signup))}
            ledger.confirm(session, demo, signups[first])  # no endpoint yet: nothing queued
            added = webhooks.add_endpoint(session, demo, receiver.url)
            ledger.confirm(session, demo, signups[second])
        with db.transaction() as session:
            webhooks.remove_endpoint(session, session.merge(added))
            subject = session.get(Subject, signups[second].subject_id)
            ledger.withdraw(session, session.merge(demo), subject, "newsletter",
                            method="manage_page", locale="en")
    rows = webhook_rows(app)
    assert [row.recipient for row in rows] == [added.public_id]  # the second confirmation only


def test_a_receiver_down_for_a_day_gets_every_event_once(app, endpoint, receiver):
    receiver.stop()
    give(app, "demo", "ana@example.test", networks=["facebook", "linkedin"])
    give(app, "demo", "bob@example.test", newsletter=True)
    withdraw(app, "ana@example.test", "linkedin")
    now = utcnow()
    assert outbox.deliver_due(app, now=now)["retried"] == 4
    assert outbox.deliver_due(app, now=now + timedelta(hours=12))["retried"] == 4
    receiver.start()
    first = webhook_rows(app)[0]
    receiver.lose_ack_of.add(json.loads(first.payload)["id"])  # processed, but the 200 is lost
    deliver_until_idle(app, now + timedelta(hours=24))
    assert {row.status for row in webhook_rows(app)} == {"sent"}
    ids = [json.loads(row.payload)["id"] for row in webhook_rows(app)]
    assert sorted(receiver.processed) == sorted(ids)
    assert sorted(body["type"] for body in receiver.processed.values()) == [
        "consent.given", "consent.given", "consent.given", "consent.withdrawn"]
    # The lost acknowledgement brought the same id back; the receiver acted on it once.
    assert receiver.attempts_of(ids[0]) == 2
    assert all(receiver.attempts_of(i) == 1 for i in ids[1:])


def test_410_gone_disables_the_endpoint(app, endpoint, receiver):
    receiver.answer = 410
    give(app, "demo", "ana@example.test", networks=["facebook", "linkedin"])  # two events
    assert outbox.deliver_due(app)["dead"] == 1
    with app.app_context():
        row = db.session().scalars(select(WebhookEndpoint)).one()
        assert (row.status, row.disabled_reason) == ("disabled", "answered 410 Gone")
    # The event still waiting for that endpoint is set aside too, without another request.
    assert [r.status for r in webhook_rows(app)] == ["dead", "dead"]
    assert len(receiver.requests) == 1
    give(app, "demo", "bob@example.test", networks=["facebook"])
    assert len(webhook_rows(app)) == 2  # nothing more is queued for a disabled endpoint


def test_retries_back_off_for_three_days_then_the_event_is_dead(app, endpoint, receiver):
    receiver.answer = 503
    give(app, "demo", "ana@example.test", networks=["facebook"])
    [row] = webhook_rows(app)
    created = row.created_at
    attempt_times, now = [], utcnow()
    while True:
        stats = outbox.deliver_due(app, now=now)
        attempt_times.append(now)
        [row] = webhook_rows(app)
        if row.status != "pending":
            break
        assert row.next_attempt_at <= created + timedelta(days=3)
        now = row.next_attempt_at
    assert stats == {"sent": 0, "retried": 0, "dead": 1}
    assert row.status == "dead" and row.last_error == "DeliveryFailed: HTTP 503"
    assert attempt_times[-1] >= created + timedelta(days=3)
    gaps = [b - a for a, b in zip(attempt_times, attempt_times[1:])]
    assert gaps[5] > 10 * gaps[0]  # exponential, not fixed
    assert max(gaps) <= outbox.MAX_BACKOFF
    assert len({i for i, _ in receiver.requests}) == 1  # the same webhook-id every attempt
    assert receiver.processed == {}


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_workers_never_send_the_same_attempt_twice(app, endpoint, receiver, workers):
    for i in range(20):
        give(app, "demo", f"p{i}@example.test", networks=["facebook"])
    expected = {json.loads(row.payload)["id"] for row in webhook_rows(app)}
    assert len(expected) == 20
    barrier = threading.Barrier(workers)
    errors = []

    def work():
        try:
            barrier.wait()
            while outbox.deliver_due(app, limit=3)["sent"]:
                pass
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(i for i, _ in receiver.requests) == sorted(expected)
    assert {row.attempts for row in webhook_rows(app)} == {1}


def test_claims_of_concurrent_sessions_are_disjoint(app, endpoint, receiver):
    for i in range(12):
        give(app, "demo", f"p{i}@example.test", networks=["facebook"])
    barrier = threading.Barrier(3)
    claimed = []

    def claim():
        with app.app_context():
            session = app.extensions["consent_db"]()
            barrier.wait()
            claimed.append([c.id for c in outbox.claim_due(session, utcnow(), 5)])
            session.close()

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    flat = [i for ids in claimed for i in ids]
    assert len(flat) == len(set(flat)) == 15  # 12 webhooks and emails: none claimed twice


def test_cli_lists_tests_redelivers_and_removes(app, runner, endpoint, receiver):
    listed = run_json(runner, "webhook", "list", "demo")["endpoints"]
    assert [(e["id"], e["url"], e["status"]) for e in listed] == [
        (endpoint["id"], receiver.url, "active")]
    assert "secret" not in listed[0]
    tested = run_json(runner, "webhook", "test", "demo", endpoint["id"])
    assert tested["ok"] and tested["status"] == 200
    assert receiver.processed[tested["webhook_id"]]["type"] == "webhook.test"

    give(app, "demo", "ana@example.test", networks=["facebook"])
    outbox.deliver_due(app)
    first_id = json.loads(webhook_rows(app)[0].payload)["id"]
    assert run_json(runner, "webhook", "redeliver", "demo", "--event", first_id) == {"queued": 1}
    since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    # Still waiting from the first redelivery: not queued a second time.
    assert run_json(runner, "webhook", "redeliver", "demo", "--since", since) == {"queued": 0}
    outbox.deliver_due(app)
    assert receiver.attempts_of(first_id) == 2 and len(receiver.processed) == 2

    withdraw(app, "ana@example.test")
    removed = run_json(runner, "webhook", "remove", "demo", endpoint["id"])
    assert removed == {"removed": endpoint["id"], "dropped_events": 1}
    assert run_json(runner, "webhook", "list", "demo")["endpoints"] == []


@pytest.mark.parametrize("args", [
    ["webhook", "add", "demo", "ftp://crm.test/hook"],
    ["webhook", "add", "demo", "https://user:pw@crm.test/hook"],
    ["webhook", "add", "demo", "https://crm.test/hook", "--event", "consent.everything"],
    ["webhook", "add", "nocampaign", "https://crm.test/hook"],
    ["webhook", "remove", "demo", "ep_unknown"],
    ["webhook", "redeliver", "demo"],
])
def test_cli_refuses_bad_input(app, runner, campaign, args):
    from consent_widget.cli import main
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert webhook_rows(app) == []


def test_a_test_to_a_dead_endpoint_exits_1(runner, endpoint, receiver):
    from consent_widget.cli import main
    receiver.stop()
    result = runner.invoke(main, ["webhook", "test", "demo", endpoint["id"]])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False


def test_erasure_and_expiry_reach_the_platform(app, runner, endpoint, receiver):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    give(app, "demo", "bob@example.test", newsletter=True)
    run_json(runner, "subject", "erase", "ana@example.test", "--campaign", "demo")
    from consent_widget import lifecycle
    lifecycle.run_jobs(app, now=utcnow() + timedelta(days=731))
    outbox.deliver_due(app)
    bodies = list(receiver.processed.values())
    assert [b["type"] for b in bodies] == ["consent.given", "consent.given",
                                           "consent.withdrawn", "subject.erased",
                                           "consent.expired"]
    withdrawn, erased, expired = bodies[2:]
    # Erased before the worker ran: the address is gone, the subject id is what to delete by.
    assert withdrawn["data"]["email"] is None and withdrawn["data"]["network"] == "facebook"
    assert erased["data"]["subject_id"] == withdrawn["data"]["subject_id"]
    assert erased["data"]["email"] is None
    assert (expired["data"]["email"], expired["data"]["purpose"]) == ("bob@example.test",
                                                                      "newsletter")
