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

from . import mail, receipts, webhooks
from .emails import lookup_hmac, normalise
from .models import (EXPIRED, GIVEN, REFUSED, REQUESTED, WITHDRAWN, Campaign, ConsentEvent,
                     ConsentState, Notice, Signup, Subject, utcnow)
from .state import states_by_item

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


@dataclass
class ChainReport:
    """The outcome of :func:`verify_chain`."""

    ok: bool
    events: int
    head: str
    broken_event: dict | None = None
    reason: str = ""
    campaigns: list[str] = field(default_factory=list)


#: Statuses an unconfirmed submission cannot change: a consent given, and the withdrawals and
#: expiries that tell platforms to delete what they matched.
SETTLED = (GIVEN, WITHDRAWN, EXPIRED)


def next_status(current: str | None, event_type: str) -> str:
    """The status after ``event_type`` happens to a consent whose status is ``current``.

    A request or refusal comes from an unconfirmed submission, and anyone can type anyone's
    address into a form: it may not undo a consent the person gave, nor hide a withdrawal or an
    expiry from the platforms that must act on it. Only a confirmed act changes those.
    """
    if event_type in (REQUESTED, REFUSED) and current in SETTLED:
        return current
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
    # In the event's transaction: a platform hears of every event, and only of events kept.
    webhooks.queue_ledger_event(session, campaign, event)
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
        return  # a request or refusal that leaves a settled consent untouched
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


def is_superseded(session: Session, signup: Signup) -> bool:
    """Whether the subject submitted the form again after ``signup`` (confirmed or not): an
    older confirmation link must never roll back a newer choice."""
    return session.scalars(select(Signup.id).where(
        Signup.campaign_id == signup.campaign_id, Signup.subject_id == signup.subject_id,
        Signup.id > signup.id)).first() is not None


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
    if is_superseded(session, signup):
        raise SignupSuperseded()
    subject = signup.subject
    if subject.email is None:
        raise SignupSuperseded()  # the address was erased or purged since the signup
    signup.confirmed_at = now
    states = states_by_item(session, campaign, subject)
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
    for state in states_by_item(session, campaign, subject).values():
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


def verify_chain(session: Session, campaign: Campaign) -> ChainReport:
    """Recompute the campaign's hash chain and replay it; report the first thing that is wrong.

    Catches an altered row (its hash no longer matches), a removed or inserted row (a gap in the
    sequence or a broken link), a removed tail (the head stored on the campaign disagrees), an
    event naming a row that does not exist, and a current state (what the check API answers)
    that differs from the replay of the events.
    """
    prev = GENESIS
    count = 0
    names = _RowNames(session)
    replayed: dict[tuple, tuple[str, int]] = {}
    rows = session.execute(select(ConsentEvent).where(ConsentEvent.campaign_id == campaign.id)
                           .order_by(ConsentEvent.seq).execution_options(yield_per=1000))
    for event in rows.scalars():
        subject, notice_sha, signup = names.of(event)
        problem = ""
        if event.seq != count + 1:
            problem = f"expected sequence number {count + 1}, found {event.seq}"
        elif event.prev_hash != prev:
            problem = "its previous-hash does not match the event before it"
        elif subject is None or notice_sha is False or signup is False:
            problem = "it names a subject, notice or signup that does not exist"
        elif event.hash != event_hash(event, campaign, subject, notice_sha, signup):
            problem = "its content does not match its hash"
        if problem:
            return ChainReport(ok=False, events=count, head=prev, reason=problem,
                               broken_event={"id": event.id, "seq": event.seq,
                                             "campaign": campaign.slug})
        key = (event.subject_id, event.purpose, event.network)
        status = next_status(replayed.get(key, (None,))[0], event.type)
        if key not in replayed or status != replayed[key][0] or event.type == status:
            replayed[key] = (status, event.id)
        prev = event.hash
        count += 1
    if count != campaign.ledger_seq or prev != campaign.ledger_head:
        return ChainReport(ok=False, events=count, head=prev,
                           reason=f"the campaign's head is event {campaign.ledger_seq}, "
                                  f"the chain ends at event {count}",
                           broken_event={"seq": count + 1, "campaign": campaign.slug})
    mismatch = _state_mismatch(session, campaign, replayed)
    if mismatch is not None:
        return ChainReport(ok=False, events=count, head=prev, broken_event=mismatch,
                           reason="a current state differs from the replay of the ledger")
    return ChainReport(ok=True, events=count, head=prev)


class _RowNames:
    """The hashed names of the rows events point to, each looked up once.

    ``of`` gives (subject public id or None, notice hash, signup public id); a notice or signup
    that is named but missing comes back as False, so tampering is reported, not crashed on.
    """

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[tuple, object] = {}

    def _get(self, model, pk, attribute):
        if pk is None:
            return None
        if (model, pk) not in self.cache:
            row = self.session.get(model, pk)
            self.cache[(model, pk)] = getattr(row, attribute) if row is not None else False
        return self.cache[(model, pk)]

    def of(self, event: ConsentEvent):
        subject = self._get(Subject, event.subject_id, "public_id")
        return (subject or None, self._get(Notice, event.notice_id, "text_sha256"),
                self._get(Signup, event.signup_id, "public_id"))


def _state_mismatch(session: Session, campaign: Campaign, replayed: dict) -> dict | None:
    """The first state row that disagrees with the replay (or is missing from it), or None."""
    stored = session.execute(select(ConsentState.id, ConsentState.subject_id,
                                    ConsentState.purpose, ConsentState.network,
                                    ConsentState.status, ConsentState.event_id)
                             .where(ConsentState.campaign_id == campaign.id))
    seen = set()
    for state_id, subject_id, purpose, network, status, event_id in stored:
        key = (subject_id, purpose, network)
        seen.add(key)
        if replayed.get(key) != (status, event_id):
            return {"state_id": state_id, "campaign": campaign.slug}
    missing = set(replayed) - seen
    if missing:
        subject_id, purpose, network = sorted(missing)[0]
        return {"subject_id": subject_id, "purpose": purpose, "network": network,
                "campaign": campaign.slug}
    return None
