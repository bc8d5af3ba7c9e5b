"""The ledger: the state follows the events, the chain detects tampering, strangers can't undo."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from consent_widget import chain, db, keys, ledger, receipts
from consent_widget.models import (Campaign, ConsentEvent, ConsentState, OutboxMessage, Receipt,
                                   Signup, SigningKey, utcnow)
from helpers import confirm, counts, give, sign_up, status, withdraw


def verify(app, slug="demo"):
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
        return chain.verify_chain(session, campaign)


def test_signup_records_requests_and_refusals_and_gives_nothing(app, campaign):
    sign_up(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    assert status(app, "demo", "ana@example.test", "newsletter") == "requested"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "requested"
    assert status(app, "demo", "ana@example.test", "social_matching", "linkedin") == "refused"


def test_signup_with_nothing_ticked_records_only_refusals(app, campaign):
    sign_up(app, "demo", "ben@example.test")
    with app.app_context():
        types = db.session().scalars(select(ConsentEvent.type)).all()
    assert sorted(types) == ["refused", "refused", "refused"]


def test_confirmation_gives_exactly_what_was_ticked(app, campaign):
    receipt_id = give(app, "demo", "ana@example.test", networks=["linkedin"])
    assert receipt_id
    assert status(app, "demo", "ana@example.test", "social_matching", "linkedin") == "given"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "refused"
    assert status(app, "demo", "ana@example.test", "newsletter") == "refused"


def test_confirming_twice_is_refused_and_changes_nothing(app, campaign):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    confirm(app, signup)
    before = counts(app)
    with pytest.raises(ledger.AlreadyConfirmed):
        confirm(app, signup)
    assert counts(app) == before


def test_a_strangers_resubmission_does_not_undo_a_given_consent(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    sign_up(app, "demo", "ana@example.test")  # nothing ticked, never confirmed
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "given"


def test_a_confirmed_resubmission_withdraws_what_was_unticked(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "ana@example.test", newsletter=True)
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "withdrawn"


def test_a_strangers_submission_does_not_hide_a_withdrawal(app, client, campaign):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    give(app, "demo", "ana@example.test")  # confirmed with nothing ticked: withdrawn
    sign_up(app, "demo", "ana@example.test", networks=["facebook"])  # never confirmed
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "withdrawn"


def test_an_older_confirmation_link_cannot_roll_back_a_newer_confirmed_choice(app, campaign):
    old = sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    confirm(app, sign_up(app, "demo", "ana@example.test", newsletter=True))
    with pytest.raises(ledger.SignupSuperseded):
        confirm(app, old)
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") != "given"
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_only_the_newest_pending_signup_can_be_confirmed(app, campaign):
    old = sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    sign_up(app, "demo", "ana@example.test", newsletter=True)
    with pytest.raises(ledger.SignupSuperseded):
        confirm(app, old)
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") != "given"


def test_withdrawal_takes_effect_at_once_and_only_for_what_was_named(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook", "linkedin"])
    receipt = withdraw(app, "demo", "ana@example.test", "social_matching", "facebook")
    assert receipt is not None and receipt.supersedes
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "withdrawn"
    assert status(app, "demo", "ana@example.test", "social_matching", "linkedin") == "given"
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"


def test_a_consent_past_its_validity_reads_as_expired(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ConsentState).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert status(app, "demo", "ana@example.test", "newsletter") == "expired"


def test_an_unknown_email_is_unknown(app, campaign):
    assert status(app, "demo", "nobody@example.test", "newsletter") == "unknown"


def test_the_chain_verifies_and_its_head_is_the_last_hash(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "ben@example.test")
    report = verify(app)
    assert report.ok and report.events == 8  # two signups of three boxes, two boxes confirmed
    with app.app_context():
        last = db.session().scalars(select(ConsentEvent).order_by(ConsentEvent.seq.desc())).first()
    assert report.head == last.hash


@pytest.mark.parametrize("tamper", ["alter", "remove_middle", "remove_last", "backdate"])
def test_tampering_is_detected(app, campaign, tamper):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "ben@example.test", networks=["linkedin"])
    with app.app_context():
        with db.transaction() as session:
            if tamper == "alter":
                session.execute(update(ConsentEvent).where(ConsentEvent.seq == 2)
                                .values(type="given"))
            elif tamper == "remove_middle":
                # seq 2 (a request later confirmed) is no state's current event, so no foreign
                # key stops its removal
                session.execute(delete(ConsentEvent).where(ConsentEvent.seq == 2))
            elif tamper == "remove_last":
                last = session.scalar(select(ConsentEvent.seq).order_by(ConsentEvent.seq.desc()))
                session.execute(update(ConsentState).values(event_id=1))
                session.execute(delete(ConsentEvent).where(ConsentEvent.seq == last))
            else:
                session.execute(update(ConsentEvent).where(ConsentEvent.seq == 4)
                                .values(occurred_at=utcnow() - timedelta(days=1)))
    report = verify(app)
    assert not report.ok
    assert report.broken_event is not None


def test_state_equals_a_replay_of_the_events(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    sign_up(app, "demo", "ana@example.test")
    give(app, "demo", "ana@example.test", networks=["linkedin"])
    with app.app_context():
        session = db.session()
        replayed = {}
        for event in session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)):
            key = (event.subject_id, event.purpose, event.network)
            replayed[key] = chain.next_status(replayed.get(key), event.type)
        stored = {(s.subject_id, s.purpose, s.network): s.status
                  for s in session.scalars(select(ConsentState))}
    assert stored == replayed


def test_a_state_that_disagrees_with_the_ledger_is_detected(app, campaign):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ConsentState).where(ConsentState.network == "linkedin")
                            .values(status="given"))
    report = verify(app)
    assert not report.ok and "state" in report.reason


def test_an_event_pointing_at_a_missing_row_is_reported_not_crashed_on(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    tamper = "UPDATE consent_events SET notice_id = 9999 WHERE seq = 1"
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite"):
        # As someone editing the file with the sqlite3 shell would: foreign keys are off there.
        import sqlite3
        raw = sqlite3.connect(url.removeprefix("sqlite:///"))
        raw.execute(tamper)
        raw.commit()
        raw.close()
    else:
        # A superuser can switch foreign key triggers off for a session, so an attacker can too.
        with app.app_context():
            with db.engine().begin() as connection:
                connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
                connection.exec_driver_sql(tamper)
    report = verify(app)
    assert not report.ok and report.broken_event["seq"] == 1


def prepare(app, signup_public_id: str):
    """What the confirmation page prepares before the ledger lock: (signup row id, prepared)."""
    with app.app_context():
        with db.transaction() as session:
            keys.active_key(session)  # the first key is created under the lock, not prepared
        with db.reading() as session:
            signup = session.scalars(select(Signup).where(
                Signup.public_id == signup_public_id)).one()
            camp = session.get(Campaign, signup.campaign_id)
            offered = ledger.offered_notices(session, camp, signup)
            return signup.id, ledger.prepare_confirmation(session, camp, signup, offered)


def confirm_prepared(app, signup_id: int, prepared):
    """Confirm with a prepared confirmation, as the confirmation page does; return the receipt."""
    with app.app_context():
        with db.transaction() as session:
            signup = session.get(Signup, signup_id)
            camp = session.get(Campaign, signup.campaign_id)
            return ledger.confirm(session, camp, signup, prepared=prepared)


def test_a_prepared_confirmation_is_written_when_nothing_changed_before_the_lock(app, campaign):
    signup_id, prepared = prepare(app, sign_up(app, "demo", "ana@example.test",
                                               newsletter=True, networks=["facebook"]))
    receipt = confirm_prepared(app, signup_id, prepared)
    assert receipt.id == prepared.receipt.id
    assert status(app, "demo", "ana@example.test", "newsletter") == "given"
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "given"
    with app.app_context():
        session = db.session()
        states = session.scalars(select(ConsentState)).all()
        assert {state.receipt_id for state in states} == {receipt.id}
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2
    assert verify(app).ok


def test_a_prepared_confirmation_is_worked_out_again_when_the_states_moved(app, campaign):
    first = give(app, "demo", "ana@example.test", newsletter=True)
    # Prepared while the newsletter is given: the plan withdraws it and gives facebook.
    signup_id, prepared = prepare(app, sign_up(app, "demo", "ana@example.test",
                                               networks=["facebook"]))
    assert prepared.receipt.supersedes == first
    withdrawal = withdraw(app, "demo", "ana@example.test", "newsletter", "")
    receipt = confirm_prepared(app, signup_id, prepared)
    assert receipt.id != prepared.receipt.id and receipt.supersedes == withdrawal.id
    with app.app_context():
        types = db.session().scalars(select(ConsentEvent.type).where(
            ConsentEvent.purpose == "newsletter").order_by(ConsentEvent.seq)).all()
    assert types == ["requested", "given", "refused", "withdrawn"]  # withdrawn once, not twice
    assert status(app, "demo", "ana@example.test", "social_matching", "facebook") == "given"
    assert verify(app).ok


def test_a_prepared_receipt_says_what_one_made_under_the_lock_says(app, campaign):
    prepared_id, prepared = prepare(app, sign_up(app, "demo", "ana@example.test",
                                                 newsletter=True, networks=["facebook"]))
    with_plan = confirm_prepared(app, prepared_id, prepared)
    without_plan = confirm(app, sign_up(app, "demo", "ben@example.test", newsletter=True,
                                        networks=["facebook"]))
    with app.app_context():
        session = db.session()
        planned = receipts.decode(with_plan)
        locked = receipts.decode(session.get(Receipt, without_plan))

    def shape(claims):
        ext = claims["ext"]
        return (claims["services"], claims["collectionMethod"],
                [(s["purpose"], s["network"], s["status"], s["noticeVersion"])
                 for s in ext["states"]],
                # Sorted: events are ordered by their time to the second, so whether a signup and
                # its confirmation fell in the same second changes their order, not what they are.
                sorted((e["purpose"], e["network"], e["type"], e["method"])
                       for e in ext["events"]),
                ext["notices"], ext["supersedes"])

    assert shape(planned) == shape(locked)


def test_nothing_is_prepared_before_the_first_signing_key_exists(app, campaign):
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    with app.app_context():
        with db.reading() as session:
            row = session.scalars(select(Signup)).one()
            camp = session.get(Campaign, row.campaign_id)
            offered = ledger.offered_notices(session, camp, row)
            assert ledger.prepare_confirmation(session, camp, row, offered) is None
    assert confirm(app, signup)  # the locked path creates the key


def test_a_read_begun_before_the_first_key_never_writes_one(app, campaign):
    # Under load, a confirmation page's read-only transaction may have begun before another
    # request created the first signing key. On SQLite such a transaction cannot write once
    # another one has committed: creating the key there answered 500 ("database is locked").
    first = sign_up(app, "demo", "ana@example.test", newsletter=True)
    second = sign_up(app, "demo", "ben@example.test", newsletter=True)
    third = sign_up(app, "demo", "cleo@example.test", newsletter=True)
    with app.app_context():
        with db.reading() as session:
            late = session.scalars(select(Signup).where(Signup.public_id == second)).one()
            camp = session.get(Campaign, late.campaign_id)
            offered = ledger.offered_notices(session, camp, late)
            # Meanwhile another request confirms, creating the key, and a third prepares; then
            # this process's memory of the signer lapses (its time to live).
            confirm(app, first)
            assert prepare(app, third)[1] is not None
            keys._signers.clear()
            prepared = ledger.prepare_confirmation(session, camp, late, offered)
    if app.config["DATABASE_URL"].startswith("sqlite"):
        assert prepared is None  # its snapshot has no key: left to the locked path
    with app.app_context():
        with db.transaction() as session:
            row = session.get(Signup, late.id)
            receipt = ledger.confirm(session, camp, row, offered=offered, prepared=prepared)
        assert receipt is not None
        claims = receipts.verify(db.session(), receipt.jws, receipts.RECEIPT_TYP)
        assert claims["consentReceiptID"] == receipt.id
        assert db.session().scalar(select(func.count()).select_from(SigningKey)) == 1
