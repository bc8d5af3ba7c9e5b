"""The life of a consent after it is given: expiry, the purge of unconfirmed signups, erasure.

These are domain functions like the ledger's, run by the worker on a schedule (expiry, purge) or
by a person (erasure, from the manage page or the CLI). Erasure removes the address and every
personal field but keeps the ledger verifiable: events name subjects by their opaque id, and the
subject row stays, without its address, as a keyed-hash suppression entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import campaigns, db, ledger, mail, receipts, webhooks
from .models import (EXPIRED, GIVEN, Campaign, ConsentState, OutboxMessage, Signup, Subject,
                     utcnow)


@dataclass(frozen=True)
class JobReport:
    """What one run of the scheduled jobs did, per campaign slug."""

    expired: dict[str, int]
    purged: dict[str, int]


def expire_due(session: Session, campaign: Campaign, now: datetime | None = None) -> int:
    """Record ``expired`` for every given consent past its validity; return how many.

    Each subject concerned gets a superseding receipt and an email asking whether to renew.
    """
    now = now or utcnow()
    # Lock before reading what is due: two job runs at once (several workers, or the CLI beside
    # a worker) would otherwise both read the same list and record each expiry twice.
    ledger.lock(session, campaign)
    due = session.scalars(select(ConsentState).where(
        ConsentState.campaign_id == campaign.id, ConsentState.status == GIVEN,
        ConsentState.expires_at <= now).order_by(ConsentState.subject_id)).all()
    if not due:
        return 0
    by_subject: dict[int, list[ConsentState]] = {}
    for state in due:
        by_subject.setdefault(state.subject_id, []).append(state)
    for subject_id, states in by_subject.items():
        subject = session.get(Subject, subject_id)
        for state in states:
            ledger.append(session, campaign, subject, state.purpose, state.network, EXPIRED,
                          method="validity_expired", actor="system", now=now)
        receipts.issue(session, campaign, subject, now=now, locale=campaign.locale, origin="",
                       method="validity_expired")
        mail.queue_renewal(session, campaign, subject, states, locale=campaign.locale)
    return len(due)


def purge_unconfirmed(session: Session, campaign: Campaign, days: int,
                      now: datetime | None = None) -> int:
    """Forget the address of everyone who signed up more than ``days`` ago and never confirmed.

    The requests and refusals stay in the ledger (under the opaque subject id): they are the
    record that nothing was given. Returns how many addresses were forgotten.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    confirmed = select(Signup.subject_id).where(Signup.campaign_id == campaign.id,
                                                Signup.confirmed_at.is_not(None))
    recent = select(Signup.subject_id).where(Signup.campaign_id == campaign.id,
                                             Signup.created_at > cutoff)
    subjects = session.scalars(select(Subject).where(
        Subject.campaign_id == campaign.id, Subject.email.is_not(None),
        Subject.id.not_in(confirmed), Subject.id.not_in(recent))).all()
    for subject in subjects:
        _forget_address(session, campaign, subject)
    return len(subjects)


def erase_subject(session: Session, campaign: Campaign, subject: Subject, *, method: str,
                  now: datetime | None = None) -> dict:
    """Erase a person: withdraw everything at once, then remove their address and links.

    Returns what was done, for the CLI and the page. Erasing twice is harmless.
    """
    now = now or utcnow()
    receipt = ledger.withdraw(session, campaign, subject, method=method,
                              locale=campaign.locale, now=now, notify=False)
    _forget_address(session, campaign, subject)
    if subject.erased_at is None:  # platforms must delete everything about the person too
        webhooks.queue_subject_erased(session, campaign, subject, now)
    subject.erased_at = subject.erased_at or now
    return {"campaign": campaign.slug, "subject_id": subject.public_id,
            "withdrawal_receipt_id": receipt.id if receipt else None,
            "erased_at": subject.erased_at.isoformat()}


def _forget_address(session: Session, campaign: Campaign, subject: Subject) -> None:
    address = subject.email
    subject.email = None
    # Every manage, unsubscribe and pending confirmation link dies with the address.
    subject.link_version += 1
    if address:
        # Queued and sent emails hold the address and the person's choices in their payload.
        session.execute(delete(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id,
                                                    OutboxMessage.kind == mail.KIND,
                                                    OutboxMessage.recipient == address))


def run_jobs(app, now: datetime | None = None) -> JobReport:
    """Run the scheduled jobs over every campaign, one transaction per campaign and job."""
    now = now or utcnow()
    expired, purged = {}, {}
    with app.app_context():
        slugs = db.session().scalars(select(Campaign.slug).order_by(Campaign.id)).all()
        for slug in slugs:
            with db.transaction() as session:
                expired[slug] = expire_due(session, campaigns.by_slug(session, slug), now)
            with db.transaction() as session:
                campaign = campaigns.by_slug(session, slug)
                purged[slug] = purge_unconfirmed(
                    session, campaign, app.config["UNCONFIRMED_RETENTION_DAYS"], now)
    return JobReport(expired=expired, purged=purged)
