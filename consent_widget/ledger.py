"""The domain: consent events appended to a per-campaign hash chain, and the state they imply.

Every change of consent is a :class:`~consent_widget.models.ConsentEvent`, written once and never
edited. Each event stores the hash of the campaign's previous event, so altering or removing a
row breaks the chain, which :func:`verify_chain` detects. The current state
(:class:`~consent_widget.models.ConsentState`) is updated in the same transaction by replaying the
event onto it with :func:`next_status`, so it always equals a replay of the ledger.

Nothing here reads the HTTP request: the edges parse their input and call one function here.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import mail, notices, receipts
from .emails import lookup_hmac, normalise
from .models import (EXPIRED, GIVEN, REFUSED, REQUESTED, WITHDRAWN, Campaign, ConsentEvent,
                     ConsentState, Notice, Signup, Subject, utcnow)

GENESIS = "0" * 64


class AlreadyConfirmed(Exception):
    """The signup was confirmed before; confirming again changes nothing."""


class SignupSuperseded(Exception):
    """A newer signup for the same subject exists; only the newest may be confirmed."""


@dataclass(frozen=True)
class Choice:
    """One box of the widget as shown: its purpose, network, notice, and whether it was ticked."""

    purpose: str
    network: str
    notice: Notice
    ticked: bool


@dataclass(frozen=True)
class StateView:
    """What the check API answers for one subject, purpose and network."""

    status: str
    subject_id: str | None = None
    receipt_id: str | None = None
    given_at: datetime | None = None
    notice_version: int | None = None

    @property
    def allowed(self) -> bool:
        """Only a confirmed, unwithdrawn, unexpired consent allows processing."""
        return self.status == GIVEN


@dataclass
class ChainReport:
    """The outcome of :func:`verify_chain`."""

    ok: bool
    events: int
    head: str
    broken_event: dict | None = None
    reason: str = ""
    campaigns: list[str] = field(default_factory=list)


def next_status(current: str | None, event_type: str) -> str:
    """The status after ``event_type`` happens to a consent whose status is ``current``.

    A request or refusal from an unconfirmed submission must not undo a consent the person gave:
    anyone can type anyone's address into a form. Only a confirmed act changes a given consent.
    """
    if event_type in (REQUESTED, REFUSED) and current == GIVEN:
        return GIVEN
    return event_type


def event_hash(event: ConsentEvent, campaign: Campaign, subject_public_id: str,
               notice_sha256: str | None, signup_public_id: str | None) -> str:
    """SHA-256 of the event's canonical JSON, which includes the previous event's hash."""
    body = {
        "campaign": campaign.slug,
        "seq": event.seq,
        "subject": subject_public_id,
        "purpose": event.purpose,
        "network": event.network,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "notice_sha256": notice_sha256,
        "signup": signup_public_id,
        "method": event.method,
        "actor": event.actor,
        "origin": event.origin,
        "locale": event.locale,
        "prev": event.prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock(session: Session, campaign: Campaign) -> None:
    """Take the campaign's ledger lock and read its head.

    Updating the campaign row first serialises appenders on PostgreSQL (row lock) and SQLite
    (write lock), so two transactions can never chain onto the same head.
    """
    session.execute(update(Campaign).where(Campaign.id == campaign.id)
                    .values(ledger_seq=Campaign.ledger_seq))
    session.refresh(campaign, attribute_names=["ledger_seq", "ledger_head"])


def append(session: Session, campaign: Campaign, subject: Subject, purpose: str, network: str,
           event_type: str, *, method: str, now: datetime, actor: str = "subject",
           notice: Notice | None = None, signup: Signup | None = None, origin: str = "",
           locale: str = "") -> ConsentEvent:
    """Append one event to the campaign's chain and replay it onto the current state.

    The caller holds the ledger lock (see :func:`lock`) for the whole transaction.
    """
    event = ConsentEvent(
        campaign_id=campaign.id, seq=campaign.ledger_seq + 1, subject_id=subject.id,
        purpose=purpose, network=network, type=event_type, occurred_at=now,
        notice_id=notice.id if notice else None, signup_id=signup.id if signup else None,
        method=method, actor=actor, origin=origin[:2000], locale=locale,
        prev_hash=campaign.ledger_head,
    )
    event.hash = event_hash(event, campaign, subject.public_id,
                            notice.text_sha256 if notice else None,
                            signup.public_id if signup else None)
    session.add(event)
    session.flush()
    campaign.ledger_seq = event.seq
    campaign.ledger_head = event.hash
    _apply_to_state(session, campaign, subject, event, notice)
    return event


def _apply_to_state(session: Session, campaign: Campaign, subject: Subject, event: ConsentEvent,
                    notice: Notice | None) -> None:
    state = session.scalars(select(ConsentState).where(
        ConsentState.campaign_id == campaign.id, ConsentState.subject_id == subject.id,
        ConsentState.purpose == event.purpose, ConsentState.network == event.network)).first()
    status = next_status(state.status if state else None, event.type)
    if state is None:
        state = ConsentState(campaign_id=campaign.id, subject_id=subject.id,
                             purpose=event.purpose, network=event.network)
        session.add(state)
    elif status == state.status and event.type != status:
        return  # a request or refusal that leaves a given consent untouched
    state.status = status
    state.event_id = event.id
    state.updated_at = event.occurred_at
    if event.type == GIVEN:
        state.notice_id = notice.id if notice else None
        state.given_at = event.occurred_at
        state.expires_at = event.occurred_at + timedelta(days=campaign.validity_days)
    else:
        state.given_at = None
        state.expires_at = None
        if event.type in (REQUESTED, REFUSED):
            state.notice_id = notice.id if notice else None


def find_subject(session: Session, campaign: Campaign, email: str, key: bytes) -> Subject | None:
    """The campaign's subject with this address, or None. Raises InvalidEmail for a bad address."""
    digest = lookup_hmac(key, normalise(email))
    return session.scalars(select(Subject).where(Subject.campaign_id == campaign.id,
                                                 Subject.email_hmac == digest)).first()


def subject_by_public_id(session: Session, campaign: Campaign, public_id: str) -> Subject | None:
    """The campaign's subject with this opaque id, or None (never another campaign's)."""
    return session.scalars(select(Subject).where(Subject.campaign_id == campaign.id,
                                                 Subject.public_id == public_id)).first()


def _get_or_create_subject(session: Session, campaign: Campaign, email: str, key: bytes) -> Subject:
    address = normalise(email)
    digest = lookup_hmac(key, address)
    subject = session.scalars(select(Subject).where(Subject.campaign_id == campaign.id,
                                                    Subject.email_hmac == digest)).first()
    if subject is None:
        subject = Subject(campaign_id=campaign.id, public_id="sub_" + secrets.token_urlsafe(16),
                          email_hmac=digest, email=address)
        session.add(subject)
        session.flush()
    elif subject.email is None:
        subject.email = address  # an erased subject signing up again
    return subject


def record_signup(session: Session, campaign: Campaign, email: str, choices: list[Choice], *,
                  key: bytes, locale: str, origin: str = "", gpc: bool = False,
                  now: datetime | None = None) -> Signup:
    """Record a widget submission: ``requested`` for each ticked box, ``refused`` for the others.

    Nothing is given until the emailed link is confirmed (double opt-in); a confirmation email is
    queued in the same transaction. A submission with nothing ticked is valid and records refusals.
    """
    now = now or utcnow()
    lock(session, campaign)
    subject = _get_or_create_subject(session, campaign, email, key)
    signup = Signup(
        public_id="sgn_" + secrets.token_urlsafe(16), campaign_id=campaign.id,
        subject_id=subject.id, locale=locale, origin=origin[:2000], gpc=gpc, created_at=now,
        choices={c.purpose + ":" + c.network: c.ticked for c in choices},
        offered={c.purpose + ":" + c.network: c.notice.id for c in choices},
    )
    session.add(signup)
    session.flush()
    for choice in choices:
        append(session, campaign, subject, choice.purpose, choice.network,
               REQUESTED if choice.ticked else REFUSED, method="widget", now=now,
               notice=choice.notice, signup=signup, origin=origin, locale=locale)
    mail.queue_confirmation(session, campaign, subject, signup)
    return signup


def confirm(session: Session, campaign: Campaign, signup: Signup,
            now: datetime | None = None):
    """Confirm a signup (double opt-in): ``given`` for each ticked box, and a new receipt.

    Boxes left unticked on the confirmed form withdraw a consent given earlier, since the person
    has now confirmed that choice from their own inbox. Returns the receipt, or None when nothing
    is given or withdrawn. Raises AlreadyConfirmed or SignupSuperseded.
    """
    now = now or utcnow()
    lock(session, campaign)
    session.refresh(signup)
    if signup.confirmed_at is not None:
        raise AlreadyConfirmed()
    newer = session.scalars(select(Signup.id).where(
        Signup.campaign_id == campaign.id, Signup.subject_id == signup.subject_id,
        Signup.id > signup.id, Signup.confirmed_at.is_(None))).first()
    if newer is not None:
        raise SignupSuperseded()
    subject = signup.subject
    if subject.email is None:
        raise SignupSuperseded()  # the address was erased or purged since the signup
    signup.confirmed_at = now
    states = _states_by_item(session, campaign, subject)
    changed = False
    for item, ticked in signup.choices.items():
        purpose, _, network = item.partition(":")
        notice = session.get(Notice, signup.offered[item])
        current = states.get(item)
        if ticked:
            append(session, campaign, subject, purpose, network, GIVEN, method="email_confirmation",
                   now=now, notice=notice, signup=signup, origin=signup.origin,
                   locale=signup.locale)
            changed = True
        elif current is not None and current.status == GIVEN:
            append(session, campaign, subject, purpose, network, WITHDRAWN,
                   method="email_confirmation", now=now, notice=notice, signup=signup,
                   origin=signup.origin, locale=signup.locale)
            changed = True
    receipt = None
    if changed:
        receipt = receipts.issue(session, campaign, subject, now=now, locale=signup.locale,
                                 origin=signup.origin, method="email_confirmation")
    mail.queue_receipt(session, campaign, subject, receipt, locale=signup.locale)
    return receipt


def withdraw(session: Session, campaign: Campaign, subject: Subject, purpose: str | None = None,
             network: str | None = None, *, method: str, locale: str,
             now: datetime | None = None, notify: bool = True):
    """Withdraw the subject's given consents matching ``purpose`` and ``network`` (None: all).

    Takes effect at once and issues a receipt that supersedes the previous one; returns it, or
    None when nothing matching was given (withdrawing twice is harmless).
    """
    now = now or utcnow()
    lock(session, campaign)
    withdrawn = []
    for state in _states_by_item(session, campaign, subject).values():
        if state.status != GIVEN:
            continue
        if purpose is not None and state.purpose != purpose:
            continue
        if network is not None and state.network != network:
            continue
        append(session, campaign, subject, state.purpose, state.network, WITHDRAWN,
               method=method, now=now, locale=locale)
        withdrawn.append(state)
    if not withdrawn:
        return None
    receipt = receipts.issue(session, campaign, subject, now=now, locale=locale, origin="",
                             method=method)
    if notify:
        mail.queue_receipt(session, campaign, subject, receipt, locale=locale)
    return receipt


def _states_by_item(session: Session, campaign: Campaign, subject: Subject) -> dict[str, ConsentState]:
    rows = session.scalars(select(ConsentState).where(ConsentState.campaign_id == campaign.id,
                                                      ConsentState.subject_id == subject.id))
    return {row.purpose + ":" + row.network: row for row in rows}


def states_of(session: Session, campaign: Campaign, subject: Subject,
              now: datetime | None = None) -> list[ConsentState]:
    """The subject's current states, newsletter first, then networks by name."""
    rows = _states_by_item(session, campaign, subject).values()
    return sorted(rows, key=lambda s: (s.purpose != "newsletter", s.purpose, s.network))


def effective_status(state: ConsentState | None, now: datetime) -> str:
    """The status a state has now: ``given`` past its validity reads as ``expired``."""
    if state is None:
        return "unknown"
    if state.status == GIVEN and state.expires_at is not None and state.expires_at <= now:
        return EXPIRED
    return state.status


def state_of(session: Session, campaign: Campaign, subject: Subject | None, purpose: str,
             network: str, now: datetime | None = None) -> StateView:
    """What a platform may do with this subject for exactly this purpose and network."""
    now = now or utcnow()
    if subject is None:
        return StateView(status="unknown")
    state = session.scalars(select(ConsentState).where(
        ConsentState.campaign_id == campaign.id, ConsentState.subject_id == subject.id,
        ConsentState.purpose == purpose, ConsentState.network == network)).first()
    status = effective_status(state, now)
    if state is None or status != GIVEN:
        return StateView(status=status, subject_id=subject.public_id)
    notice = session.get(Notice, state.notice_id) if state.notice_id else None
    return StateView(status=status, subject_id=subject.public_id, receipt_id=state.receipt_id,
                     given_at=state.given_at, notice_version=notice.version if notice else None)


def verify_chain(session: Session, campaign: Campaign) -> ChainReport:
    """Recompute the campaign's hash chain; report the first event that does not verify.

    Catches an altered row (its hash no longer matches), a removed or inserted row (a gap in the
    sequence or a broken link), and a removed tail (the head stored on the campaign disagrees).
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    subjects: dict[int, str] = {}
    notice_hashes: dict[int, str] = {}
    signups: dict[int, str] = {}
    rows = session.execute(select(ConsentEvent).where(ConsentEvent.campaign_id == campaign.id)
                           .order_by(ConsentEvent.seq).execution_options(yield_per=1000))
    for event in rows.scalars():
        if event.subject_id not in subjects:
            subjects[event.subject_id] = session.get(Subject, event.subject_id).public_id
        if event.notice_id is not None and event.notice_id not in notice_hashes:
            notice_hashes[event.notice_id] = session.get(Notice, event.notice_id).text_sha256
        if event.signup_id is not None and event.signup_id not in signups:
            signups[event.signup_id] = session.get(Signup, event.signup_id).public_id
        problem = ""
        if event.seq != expected_seq:
            problem = f"expected sequence number {expected_seq}, found {event.seq}"
        elif event.prev_hash != prev:
            problem = "its previous-hash does not match the event before it"
        elif event.hash != event_hash(event, campaign, subjects[event.subject_id],
                                      notice_hashes.get(event.notice_id),
                                      signups.get(event.signup_id)):
            problem = "its content does not match its hash"
        if problem:
            return ChainReport(ok=False, events=count, head=prev, reason=problem,
                               broken_event={"id": event.id, "seq": event.seq,
                                             "campaign": campaign.slug})
        prev = event.hash
        expected_seq += 1
        count += 1
    if count != campaign.ledger_seq or prev != campaign.ledger_head:
        return ChainReport(ok=False, events=count, head=prev,
                           reason=f"the campaign's head is event {campaign.ledger_seq}, "
                                  f"the chain ends at event {count}",
                           broken_event={"seq": count + 1, "campaign": campaign.slug})
    return ChainReport(ok=True, events=count, head=prev)
