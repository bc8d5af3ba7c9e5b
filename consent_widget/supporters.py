"""What a campaign's team needs to answer a supporter: find them, see their history, hand them
everything held about them (GDPR Art. 15), or erase them (Art. 17, in lifecycle).

Every query names the campaign: a subject id of another campaign finds nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import events, ledger, receipts, state
from .emails import InvalidEmail
from .models import (Campaign, ConsentEvent, Notice, OutboxMessage, Receipt, Signup, Subject,
                     utcnow)

#: The prefix of subjects' public ids, which tells an id from an address in the lookup box.
SUBJECT_PREFIX = "sub_"


def find(session: Session, campaign: Campaign, query: str, key: bytes) -> Subject | None:
    """The campaign's supporter with this subject id or email address, or None."""
    query = (query or "").strip()
    if not query or len(query) > 320:
        return None
    if query.startswith(SUBJECT_PREFIX):
        return ledger.subject_by_public_id(session, campaign, query)
    try:
        return ledger.find_subject(session, campaign, query, key)
    except InvalidEmail:
        return None


@dataclass(frozen=True)
class Delivery:
    """One queued message about the person: an email to them, or a webhook about them."""

    kind: str
    what: str
    status: str
    attempts: int
    created_at: object
    sent_at: object
    last_status: int | None
    last_error: str


def events_of(session: Session, campaign: Campaign, subject: Subject) -> list[ConsentEvent]:
    """The person's ledger events, newest first."""
    return list(session.scalars(select(ConsentEvent).where(
        ConsentEvent.campaign_id == campaign.id, ConsentEvent.subject_id == subject.id)
        .order_by(ConsentEvent.seq.desc())))


def notices_of(session: Session, campaign: Campaign, rows) -> dict[int, Notice]:
    """The notices named by ``rows`` (ledger events), by id."""
    ids = {row.notice_id for row in rows if getattr(row, "notice_id", None)}
    if not ids:
        return {}
    return {n.id: n for n in session.scalars(select(Notice).where(
        Notice.campaign_id == campaign.id, Notice.id.in_(ids)))}


def receipts_of(session: Session, campaign: Campaign, subject: Subject) -> list[Receipt]:
    """The person's receipts, newest first."""
    return list(session.scalars(select(Receipt).where(
        Receipt.campaign_id == campaign.id, Receipt.subject_id == subject.id)
        .order_by(Receipt.issued_at.desc())))


def receipt_of(session: Session, campaign: Campaign, subject: Subject,
               receipt_id: str) -> Receipt | None:
    """One of the person's receipts, or None."""
    return session.scalars(select(Receipt).where(
        Receipt.campaign_id == campaign.id, Receipt.subject_id == subject.id,
        Receipt.id == receipt_id)).first()


def signups_of(session: Session, campaign: Campaign, subject: Subject) -> list[Signup]:
    """The person's widget submissions, newest first."""
    return list(session.scalars(select(Signup).where(
        Signup.campaign_id == campaign.id, Signup.subject_id == subject.id)
        .order_by(Signup.created_at.desc())))


def deliveries(session: Session, campaign: Campaign, subject: Subject,
               history: list[ConsentEvent]) -> list[Delivery]:
    """Emails queued to the person's address and webhooks about them, newest first.

    A webhook of a ledger event stores only the event's id (the body is built when sent), so
    it is found by that exact payload; an erasure's carries the subject id in its body.
    """
    webhook_payloads = [json.dumps({"id": events.event_id(row), "event": row.id},
                                   separators=(",", ":")) for row in history]
    about = [OutboxMessage.payload.in_(webhook_payloads)] if webhook_payloads else []
    about.append(OutboxMessage.payload.contains(f'"subject_id":"{subject.public_id}"'))
    conditions = [(OutboxMessage.kind == "webhook") & or_(*about)]
    if subject.email:
        conditions.append((OutboxMessage.kind == "email")
                          & (OutboxMessage.recipient == subject.email))
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.campaign_id == campaign.id, or_(*conditions))
        .order_by(OutboxMessage.id.desc()).limit(500))
    return [Delivery(row.kind, _what(row), row.status, row.attempts, row.created_at,
                     row.sent_at, row.last_status, row.last_error) for row in rows]


def _what(row: OutboxMessage) -> str:
    """What a message is, without its content: the email's template, the webhook's event."""
    try:
        payload = json.loads(row.payload)
    except ValueError:
        return ""
    if row.kind == "email":
        return str(payload.get("template", ""))
    body = payload.get("body") or {}
    return str(body.get("type") or payload.get("id", ""))


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def access_export(session: Session, campaign: Campaign, subject: Subject) -> dict:
    """Everything held about the person, as one JSON-ready document (GDPR Art. 15)."""
    history = events_of(session, campaign, subject)
    signups = signups_of(session, campaign, subject)
    shown_ids = {notice_id for signup in signups for notice_id in (signup.offered or {}).values()
                 if isinstance(notice_id, int)}
    shown_ids |= {row.notice_id for row in history if row.notice_id}
    shown = {n.id: n for n in session.scalars(select(Notice).where(
        Notice.campaign_id == campaign.id, Notice.id.in_([i for i in shown_ids if i])))}
    return {
        "exported_at": _iso(utcnow()),
        "controller": {"name": campaign.controller, "address": campaign.controller_address,
                       "contact": campaign.contact_email, "policy_url": campaign.policy_url},
        "campaign": campaign.slug,
        "subject": {"id": subject.public_id, "email": subject.email,
                    "created_at": _iso(subject.created_at), "erased_at": _iso(subject.erased_at)},
        "signups": [{"id": s.public_id, "created_at": _iso(s.created_at),
                     "confirmed_at": _iso(s.confirmed_at), "choices": s.choices,
                     "offered": s.offered, "locale": s.locale, "origin": s.origin,
                     "global_privacy_control": s.gpc} for s in signups],
        "consents": [{"purpose": st.purpose, "network": st.network,
                      "status": state.effective_status(st, utcnow()),
                      "given_at": _iso(st.given_at), "expires_at": _iso(st.expires_at),
                      "receipt_id": st.receipt_id}
                     for st in state.states_of(session, campaign, subject)],
        "events": [{"seq": e.seq, "type": e.type, "purpose": e.purpose, "network": e.network,
                    "occurred_at": _iso(e.occurred_at), "method": e.method, "actor": e.actor,
                    "origin": e.origin, "locale": e.locale,
                    "notice_sha256": shown[e.notice_id].text_sha256
                    if e.notice_id in shown else None, "hash": e.hash} for e in history],
        "notices_shown": [{"purpose": n.purpose, "network": n.network, "locale": n.locale,
                           "version": n.version, "text": n.text, "text_sha256": n.text_sha256}
                          for n in sorted(shown.values(), key=lambda n: n.id)],
        "receipts": [{"id": r.id, "issued_at": _iso(r.issued_at), "jws": r.jws,
                      "claims": receipts.decode(r)} for r in receipts_of(session, campaign,
                                                                          subject)],
        "messages": [{"kind": d.kind, "what": d.what, "status": d.status,
                      "queued_at": _iso(d.created_at), "sent_at": _iso(d.sent_at)}
                     for d in deliveries(session, campaign, subject, history)],
    }
