"""After consent: expiry with renewal emails, the purge of unconfirmed signups, erasure."""
from __future__ import annotations

import email
import email.policy
from datetime import timedelta

from sqlalchemy import func, select

from consent_widget import chain, db, lifecycle, mail
from consent_widget.models import (Campaign, ConsentEvent, OutboxMessage, Receipt, Subject,
                                   utcnow)
from conftest import run_json
from helpers import give, sign_up, status
from test_links import link_path


def outbox_subjects(app, address):
    """The emails queued for ``address``, as the worker will send them."""
    with app.app_context():
        rows = db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == address).order_by(OutboxMessage.id)).all()
        return [mail.message_bytes(row.payload) for row in rows]


def chain_ok(app):
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).first()
        return chain.verify_chain(session, campaign).ok


def test_a_consent_past_its_validity_expires_with_an_event_a_receipt_and_a_renewal_email(
        app, campaign):
    first_receipt = give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "ben@example.test", newsletter=True)
    later = utcnow() + timedelta(days=731)
    report = lifecycle.run_jobs(app, now=later)
    assert report.expired == {"demo": 3}
    with app.app_context():
        session = db.session()
        expired_events = session.scalar(select(func.count()).select_from(ConsentEvent)
                                        .where(ConsentEvent.type == "expired"))
        newest = session.scalars(select(Receipt).where(Receipt.supersedes == first_receipt)).one()
    assert expired_events == 3 and newest.supersedes == first_receipt
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "expired"
    renewal = email.message_from_bytes(outbox_subjects(app, "ana@example.test")[-1],
                                       policy=email.policy.default)
    assert renewal["Subject"] == "Vos consentements à Marie 2027 ont pris fin"
    body = renewal.get_body(preferencelist=("plain",)).get_content()
    assert "http://consent.test/w/demo\r\n" in body and "/manage/" in body
    assert lifecycle.run_jobs(app, now=later).expired == {"demo": 0}
    assert chain_ok(app)


def test_a_consent_within_its_validity_does_not_expire(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    assert lifecycle.run_jobs(app, now=utcnow() + timedelta(days=729)).expired == {"demo": 0}
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_unconfirmed_signups_are_forgotten_after_the_retention_period(app, client, campaign):
    pending = sign_up(app, "demo", "ana@example.test", newsletter=True)
    give(app, "demo", "ben@example.test", newsletter=True)
    confirm_path = link_path(app, "confirm", public_id=pending)
    assert lifecycle.run_jobs(app, now=utcnow() + timedelta(days=6)).purged == {"demo": 0}
    assert lifecycle.run_jobs(app, now=utcnow() + timedelta(days=8)).purged == {"demo": 1}
    with app.app_context():
        emails = set(db.session().scalars(select(Subject.email)))
    assert emails == {None, "ben@example.test"}
    assert outbox_subjects(app, "ana@example.test") == []
    assert client.post(confirm_path).status_code in (404, 409)
    assert status(app, "demo", "ben@example.test", "newsletter") == "given"
    assert chain_ok(app)


def test_erasure_from_the_cli_withdraws_erases_and_keeps_a_suppression_entry(app, runner,
                                                                             campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    manage = link_path(app, "manage", email="ana@example.test")
    out = run_json(runner, "subject", "erase", "Ana@Example.test")
    assert [entry["campaign"] for entry in out["erased"]] == ["demo"]
    assert out["erased"][0]["withdrawal_receipt_id"]
    with app.app_context():
        subject = db.session().scalars(select(Subject)).one()
    assert subject.email is None and subject.erased_at is not None
    # The keyed hash still finds the person: a platform re-importing the address is told no.
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "withdrawn"
    assert outbox_subjects(app, "ana@example.test") == []
    assert app.test_client().get(manage).status_code == 404
    assert chain_ok(app)
    assert run_json(runner, "subject", "erase", "nobody@example.test") == {"erased": []}


def test_erasure_from_the_manage_page_needs_a_post_then_a_confirmation(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "manage", email="ana@example.test")
    assert client.get(path).status_code == 200
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    # The first button only asks: one click erases nothing.
    asked = client.post(path, data={"action": "erase"})
    assert asked.status_code == 200
    assert 'value="erase-confirmed"' in asked.get_data(as_text=True)
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    with app.app_context():
        assert db.session().scalars(select(Subject.email)).one() == "ana@example.test"
    response = client.post(path, data={"action": "erase-confirmed"})
    assert response.status_code == 200
    assert status(app, "demo", "ana@example.test", "newsletter") == "withdrawn"
    with app.app_context():
        assert db.session().scalars(select(Subject.email)).one() is None
    assert client.get(path).status_code == 404


def test_the_erasure_confirmation_needs_the_signed_link(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    path = link_path(app, "manage", email="ana@example.test")
    forged = path[:-4] + "AAAA"
    assert client.post(forged, data={"action": "erase-confirmed"}).status_code in (400, 404)
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_a_person_can_sign_up_again_after_erasure(app, runner, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    run_json(runner, "subject", "erase", "ana@example.test")
    give(app, "demo", "ana@example.test", newsletter=True)
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    assert chain_ok(app)


def test_the_worker_runs_the_scheduled_jobs(app, campaign):
    import threading
    from consent_widget import outbox
    sign_up(app, "demo", "ana@example.test", newsletter=True)
    stop = threading.Event()
    reports = []

    def jobs(the_app):
        # As if the worker ran a week from now: the unconfirmed address is forgotten.
        reports.append(lifecycle.run_jobs(the_app, now=utcnow() + timedelta(days=8)))
        stop.set()
        return reports[-1]

    worker = threading.Thread(target=outbox.run_worker, args=(app, 0.01, stop),
                              kwargs={"jobs": jobs})
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert reports and reports[0].purged == {"demo": 1}
