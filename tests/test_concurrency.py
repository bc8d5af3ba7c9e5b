"""Many writers on one campaign at once: the chain stays whole and the state equals its replay.

Runs on SQLite and, when configured, on PostgreSQL, where the writers really overlap: each
thread has its own connection, and only the ledger lock keeps two of them from chaining onto
the same head.
"""
from __future__ import annotations

import random
import threading
from collections import defaultdict

from sqlalchemy import func, select

from consent_widget import chain, db, ledger, notices
from consent_widget.emails import lookup_key
from consent_widget.models import Campaign, ConsentEvent, ConsentState, Notice, Subject
from helpers import confirm, sign_up

THREADS = 6
ROUNDS = 8


def run_together(count: int, work) -> list[BaseException]:
    """Run ``work(index)`` in ``count`` threads released at the same moment; return the errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index):
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:  # surfaced by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a writer never finished"
    return errors


def withdraw(app, email: str, network: str | None) -> None:
    """Withdraw one network (or everything) as the manage page would."""
    with app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            subject = ledger.find_subject(session, campaign, email, lookup_key(app.config))
            if subject is not None:
                ledger.withdraw(session, campaign, subject, network=network, method="manage_page",
                                locale="fr")


def replayed_states(session, campaign) -> dict:
    """The status of every (subject, purpose, network), replayed from the events in order."""
    states: dict = {}
    events = session.scalars(select(ConsentEvent).where(ConsentEvent.campaign_id == campaign.id)
                             .order_by(ConsentEvent.seq))
    for event in events:
        item = (event.subject_id, event.purpose, event.network)
        states[item] = chain.next_status(states.get(item), event.type)
    return states


def test_concurrent_signups_confirmations_and_withdrawals_keep_one_verifiable_chain(app, campaign):
    # Few addresses, shared by every thread: the writers collide on subjects as well as on the
    # chain, and confirmations meet newer signups of the same person.
    emails = [f"person{i}@example.test" for i in range(6)]
    outcomes = defaultdict(int)

    def work(index):
        rng = random.Random(index)
        for _ in range(ROUNDS):
            email = rng.choice(emails)
            signup = sign_up(app, "demo", email, newsletter=rng.random() < 0.5,
                             networks=rng.sample(["facebook", "linkedin"], rng.randint(0, 2)))
            try:
                confirm(app, signup)
                outcomes["confirmed"] += 1
            except (ledger.SignupSuperseded, ledger.AlreadyConfirmed):
                outcomes["superseded"] += 1  # another thread signed the same person up since
            if rng.random() < 0.3:
                withdraw(app, email, rng.choice([None, "facebook", "linkedin"]))
                outcomes["withdrawn"] += 1

    assert run_together(THREADS, work) == []
    assert outcomes["confirmed"] > 0 and outcomes["withdrawn"] > 0

    with app.app_context():
        session = db.session()
        campaign_row = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
        report = chain.verify_chain(session, campaign_row)
        assert report.ok, report.reason
        # Every signup appended one event per offered box (newsletter + two networks).
        assert report.events >= THREADS * ROUNDS * 3
        seqs = session.scalars(select(ConsentEvent.seq).order_by(ConsentEvent.seq)).all()
        assert seqs == list(range(1, report.events + 1))
        stored = {(s.subject_id, s.purpose, s.network): s.status
                  for s in session.scalars(select(ConsentState))}
        assert stored == replayed_states(session, campaign_row)
        # One subject per address, however many threads created it at once.
        assert session.scalar(select(func.count()).select_from(Subject)) == len(emails)


def test_first_views_of_a_new_notice_at_once_record_one_version(app, campaign):
    ids = []

    def view(_index):
        with app.app_context():
            with db.transaction() as session:
                row = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
                ids.append(notices.current_notice(session, row, "newsletter", "", "en").id)

    assert run_together(THREADS, view) == []
    assert len(set(ids)) == 1
    with app.app_context():
        versions = db.session().scalars(select(Notice.version).where(
            Notice.purpose == "newsletter", Notice.locale == "en")).all()
    assert versions == [1]
