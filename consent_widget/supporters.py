"""What a campaign's team needs to answer a supporter: find them, read their record, hand them
everything held about them (GDPR Art. 15). Erasure (Art. 17) is
:func:`consent_widget.lifecycle.erase_subject`, the function the ``subject erase`` command uses.

Every query names the campaign: a subject id of another campaign finds nothing. Nothing here
reads the HTTP request; the console's views call these functions and render what they return.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import events, ledger, mail, notices, receipts, state, webhooks
from .emails import InvalidEmail
from .models import (Campaign, ConsentEvent, ConsentState, Notice, OutboxMessage, Receipt,
                     Signup, Subject, WebhookEndpoint, utcnow)

#: The prefix of subjects' public ids, which tells an id from an address in the lookup box.
SUBJECT_PREFIX = "sub_"
#: The longest public id the lookup accepts (the column's length).
MAX_SUBJECT_ID = 40
#: The name and version of the access export's format, written into every export.
EXPORT_FORMAT = "consent_widget.subject-access-export.v1"


class InvalidLookup(ValueError):
    """What was typed is neither an email address nor a subject id."""


def find(session: Session, campaign: Campaign, query: str, key: bytes) -> Subject | None:
    """The campaign's supporter with this subject id (``sub_…``) or email address, or None.

    An address is found through its keyed hash, so it matches whatever its case or the spaces
    around it; an erased supporter is still found by it (the hash is kept as a suppression
    entry). Raises :class:`InvalidLookup` for anything that is neither.
    """
    query = (query or "").strip()
    if not query:
        raise InvalidLookup("empty")
    if query.startswith(SUBJECT_PREFIX):
        if len(query) > MAX_SUBJECT_ID:
            return None
        return ledger.subject_by_public_id(session, campaign, query)
    try:
        return ledger.find_subject(session, campaign, query, key)
    except InvalidEmail:
        raise InvalidLookup("not an address") from None


def subject(session: Session, campaign: Campaign, public_id: str) -> Subject | None:
    """The campaign's supporter with this public id, or None (never another campaign's)."""
    if not public_id.startswith(SUBJECT_PREFIX) or len(public_id) > MAX_SUBJECT_ID:
        return None
    return ledger.subject_by_public_id(session, campaign, public_id)


# --- the record -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryEntry:
    """One ledger event of the person, with the text they were shown for it, if any."""

    event: ConsentEvent
    notice: Notice | None


@dataclass(frozen=True)
class CurrentState:
    """One consent of the person as it stands now."""

    state: ConsentState
    status: str
    notice: Notice | None


@dataclass(frozen=True)
class EmailSent:
    """An email queued to the person's address: what it was and how its delivery went."""

    template: str
    status: str
    attempts: int
    queued_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class WebhookDelivery:
    """A webhook about the person: which event, to which endpoint, and how it went."""

    event_id: str
    event_type: str
    endpoint_id: str
    endpoint_url: str | None
    status: str
    attempts: int
    last_status: int | None
    last_error: str
    queued_at: datetime
    sent_at: datetime | None


def history(session: Session, campaign: Campaign, person: Subject) -> list[HistoryEntry]:
    """The person's ledger events, newest first, each with the notice shown for it."""
    rows = session.scalars(select(ConsentEvent).where(
        ConsentEvent.campaign_id == campaign.id, ConsentEvent.subject_id == person.id)
        .order_by(ConsentEvent.seq.desc())).all()
    shown = notices.by_ids(session, campaign, [row.notice_id for row in rows])
    return [HistoryEntry(row, shown.get(row.notice_id)) for row in rows]


def current_states(session: Session, campaign: Campaign, person: Subject,
                   now: datetime | None = None) -> list[CurrentState]:
    """The person's consents now (a given one past its validity reads as expired), in the
    order pages list them, each with the notice it rests on."""
    now = now or utcnow()
    rows = state.states_of(session, campaign, person)
    shown = notices.by_ids(session, campaign, [row.notice_id for row in rows])
    return [CurrentState(row, state.effective_status(row, now), shown.get(row.notice_id))
            for row in rows]


def receipts_of(session: Session, campaign: Campaign, person: Subject) -> list[Receipt]:
    """The person's receipts, newest first."""
    return list(session.scalars(select(Receipt).where(
        Receipt.campaign_id == campaign.id, Receipt.subject_id == person.id)
        .order_by(Receipt.issued_at.desc(), Receipt.id)))


def receipt_of(session: Session, campaign: Campaign, person: Subject,
               receipt_id: str) -> Receipt | None:
    """One of the person's receipts, or None (never another person's)."""
    if len(receipt_id) > 36:
        return None
    return session.scalars(select(Receipt).where(
        Receipt.campaign_id == campaign.id, Receipt.subject_id == person.id,
        Receipt.id == receipt_id)).first()


def signups_of(session: Session, campaign: Campaign, person: Subject) -> list[Signup]:
    """The person's widget submissions, newest first."""
    return list(session.scalars(select(Signup).where(
        Signup.campaign_id == campaign.id, Signup.subject_id == person.id)
        .order_by(Signup.created_at.desc(), Signup.id.desc())))


def emails_sent(session: Session, campaign: Campaign, person: Subject) -> list[EmailSent]:
    """The emails queued to the person's address, newest first: none once it is erased (the
    erasure deletes them with the address)."""
    if not person.email:
        return []
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.campaign_id == campaign.id, OutboxMessage.kind == mail.KIND,
        OutboxMessage.recipient == person.email).order_by(OutboxMessage.id.desc()))
    return [EmailSent(_template(row.payload), row.status, row.attempts, row.created_at,
                      row.sent_at) for row in rows]


def _template(payload: str) -> str:
    # The payload holds the whole email's facts (links, choices); only its kind is shown. A
    # payload queued by an earlier release is the message itself, of no known template.
    try:
        return str(json.loads(payload).get("template", ""))
    except (ValueError, AttributeError):
        return ""


def webhook_deliveries(session: Session, campaign: Campaign, person: Subject,
                       entries: list[HistoryEntry] | None = None) -> list[WebhookDelivery]:
    """The webhooks about the person, newest first.

    A ledger event's webhook stores only the event's id and the ledger row's (the worker builds
    the body when it sends), so it is found by exactly the message
    :func:`consent_widget.webhooks.queue_ledger_event` queues for one of the person's events;
    an erasure's carries the body, which names the subject id.
    """
    if entries is None:
        entries = history(session, campaign, person)
    types = {}
    messages = []
    for entry in entries:
        event_class = events.LEDGER_EVENTS.get(entry.event.type)
        if event_class is not None:
            message_id = events.event_id(entry.event)
            types[message_id] = event_class.type
            messages.append(json.dumps({"id": message_id, "event": entry.event.id},
                                       separators=(",", ":")))
    about = [OutboxMessage.payload.contains(f'"subject_id":"{person.public_id}"',
                                            autoescape=True)]
    if messages:
        about.append(OutboxMessage.payload.in_(messages))
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.campaign_id == campaign.id, OutboxMessage.kind == webhooks.KIND,
        or_(*about)).order_by(OutboxMessage.id.desc())).all()
    urls = {}
    if rows:
        urls = dict(session.execute(select(WebhookEndpoint.public_id, WebhookEndpoint.url).where(
            WebhookEndpoint.campaign_id == campaign.id,
            WebhookEndpoint.public_id.in_(sorted({row.recipient for row in rows})))).all())
    found = []
    for row in rows:
        message = json.loads(row.payload)
        data = (message.get("body") or {}).get("data") or {}
        if "event" not in message and data.get("subject_id") != person.public_id:
            continue  # the id appeared in the body but not as this body's subject
        found.append(WebhookDelivery(
            event_id=message["id"],
            event_type=types.get(message["id"]) or (message.get("body") or {}).get("type", ""),
            endpoint_id=row.recipient, endpoint_url=urls.get(row.recipient),
            status=row.status, attempts=row.attempts, last_status=row.last_status,
            last_error=row.last_error, queued_at=row.created_at, sent_at=row.sent_at))
    return found


def manage_link_locale(session: Session, campaign: Campaign, person: Subject) -> str:
    """The language to write to the person in: that of their newest signup, else the
    campaign's."""
    newest = session.scalars(select(Signup.locale).where(
        Signup.campaign_id == campaign.id, Signup.subject_id == person.id)
        .order_by(Signup.id.desc()).limit(1)).first()
    return newest or campaign.locale


def resend_manage_link(session: Session, campaign: Campaign, person: Subject) -> bool:
    """Queue an email with the person's manage link, in their language, through the outbox;
    False (nothing queued) when their address was erased."""
    queued = mail.queue_manage_link(session, campaign, person,
                                    manage_link_locale(session, campaign, person))
    return queued is not None


# --- the access export (GDPR Art. 15) --------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _notice_ref(notice: Notice | None) -> dict | None:
    """How the export names a notice: its version, language and the SHA-256 of its text,
    which is the key of the text in the export's ``notices``."""
    if notice is None:
        return None
    return {"version": notice.version, "locale": notice.locale, "text_sha256": notice.text_sha256}


def _endpoint_host(url: str | None) -> str | None:
    # The recipient (Art. 15(1)(c)) is the platform's host; the rest of a webhook URL may
    # carry the platform's own token, which is not the person's data.
    return urlsplit(url).hostname if url else None


def access_export(session: Session, campaign: Campaign, person: Subject,
                  now: datetime | None = None) -> dict:
    """Everything held about the person, as one JSON-ready document (GDPR Art. 15).

    The person, their address, every signup (what was offered and ticked, from which page,
    with Global Privacy Control or not, when), every ledger event, their consents now, every
    receipt (the signed JWS and its claims), the emails sent to them and the webhooks sent
    about them (what and when, not their content), and the exact text of every notice they
    were shown. Named by public ids and SHA-256 digests only: no other person appears in it.
    """
    now = now or utcnow()
    entries = history(session, campaign, person)
    signups = signups_of(session, campaign, person)
    states = current_states(session, campaign, person, now)
    offered_ids = [notice_id for signup in signups for notice_id in (signup.offered or {}).values()]
    offered = notices.by_ids(session, campaign, offered_ids)
    shown = {**offered, **{e.notice.id: e.notice for e in entries if e.notice},
             **{s.notice.id: s.notice for s in states if s.notice}}
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(now),
        "controller": {"name": campaign.controller, "address": campaign.controller_address,
                       "contact": campaign.contact_email, "policy_url": campaign.policy_url},
        "campaign": {"slug": campaign.slug, "name": campaign.name},
        "subject": {"id": person.public_id, "created_at": _iso(person.created_at),
                    "erased_at": _iso(person.erased_at)},
        "email": person.email,
        "signups": [{
            "id": s.public_id, "created_at": _iso(s.created_at),
            "confirmed_at": _iso(s.confirmed_at), "locale": s.locale, "origin": s.origin,
            "global_privacy_control": s.gpc, "choices": s.choices,
            "offered": {item: _notice_ref(offered.get(notice_id))
                        for item, notice_id in (s.offered or {}).items()}}
            for s in signups],
        "events": [{
            "seq": e.event.seq, "occurred_at": _iso(e.event.occurred_at), "type": e.event.type,
            "purpose": e.event.purpose, "network": e.event.network, "method": e.event.method,
            "actor": e.event.actor, "origin": e.event.origin, "locale": e.event.locale,
            "notice": _notice_ref(e.notice), "hash": e.event.hash,
            "prev_hash": e.event.prev_hash} for e in entries],
        "states": [{
            "purpose": s.state.purpose, "network": s.state.network, "status": s.status,
            "given_at": _iso(s.state.given_at), "expires_at": _iso(s.state.expires_at),
            "updated_at": _iso(s.state.updated_at), "receipt_id": s.state.receipt_id,
            "notice": _notice_ref(s.notice)} for s in states],
        "receipts": [{
            "id": r.id, "issued_at": _iso(r.issued_at), "supersedes": r.supersedes,
            "kid": r.kid, "jws": r.jws, "claims": receipts.decode(r)}
            for r in receipts_of(session, campaign, person)],
        "emails": [{
            "template": m.template, "status": m.status, "attempts": m.attempts,
            "queued_at": _iso(m.queued_at), "sent_at": _iso(m.sent_at)}
            for m in emails_sent(session, campaign, person)],
        "webhook_deliveries": [{
            "event_id": d.event_id, "type": d.event_type,
            "recipient": _endpoint_host(d.endpoint_url), "status": d.status,
            "attempts": d.attempts, "queued_at": _iso(d.queued_at), "sent_at": _iso(d.sent_at)}
            for d in webhook_deliveries(session, campaign, person, entries)],
        "notices": [{
            "purpose": n.purpose, "network": n.network, "locale": n.locale,
            "version": n.version, "text_sha256": n.text_sha256, "text": n.text,
            "published_at": _iso(n.created_at)}
            for n in sorted(shown.values(), key=lambda n: n.id)],
    }
