"""The events a platform hears about, by webhook or from the event feed.

Each event type is a dataclass whose docstring is its documentation (the README's webhook
section and the OpenAPI document are written from them). Consent events are views of the ledger:
their body is built from the ledger row each time it is needed, so a webhook, its retries and the
feed all say exactly what the ledger says.

Every body has the shape ``{"type", "timestamp", "data": {...}}`` of the contract; ``data`` always
carries ``campaign``, ``subject_id``, ``email``, ``purpose``, ``network``, ``status`` and
``receipt_id`` (null where they do not apply).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from .models import EXPIRED, GIVEN, WITHDRAWN, Campaign, ConsentEvent, Receipt, Subject


@dataclass(frozen=True)
class EventData:
    """Fields every event's ``data`` carries; see each event type for their meaning there."""

    campaign: str
    subject_id: str
    email: str | None
    purpose: str | None
    network: str | None
    status: str | None
    receipt_id: str | None


@dataclass(frozen=True)
class ConsentGiven(EventData):
    """``consent.given``: the person confirmed from their inbox (double opt-in) that the
    campaign may use their data for ``purpose`` (and ``network``). ``status`` is ``given``;
    ``receipt_id`` names the signed receipt issued at that moment. From now on ``check``
    answers ``allowed: true`` for exactly this purpose and network."""

    type: ClassVar[str] = "consent.given"


@dataclass(frozen=True)
class ConsentWithdrawn(EventData):
    """``consent.withdrawn``: the person withdrew this consent (manage page, one-click
    unsubscribe, a confirmed form with the box unticked, or erasure). ``status`` is
    ``withdrawn``; ``receipt_id`` names the superseding receipt. The platform must stop at once
    and delete what it matched for this ``network`` (GDPR Art. 7(3), 17(1)(b)). ``email`` is null
    when the address has been erased since: match on ``subject_id``."""

    type: ClassVar[str] = "consent.withdrawn"


@dataclass(frozen=True)
class ConsentExpired(EventData):
    """``consent.expired``: the consent reached the end of the campaign's validity period
    without being renewed. ``status`` is ``expired``; treat it as a withdrawal: stop and delete
    the matched data for this ``network`` until a new ``consent.given`` arrives."""

    type: ClassVar[str] = "consent.expired"


@dataclass(frozen=True)
class SubjectErased(EventData):
    """``subject.erased``: the person had the campaign erase their data (GDPR Art. 17). Their
    consents were withdrawn first (each with its ``consent.withdrawn``); now delete everything
    held about ``subject_id``. ``email`` is always null (it no longer exists here); ``purpose``,
    ``network``, ``status`` and ``receipt_id`` are null."""

    type: ClassVar[str] = "subject.erased"


@dataclass(frozen=True)
class WebhookTest(EventData):
    """``webhook.test``: sent by ``consent-widget webhook test`` to check that an endpoint
    receives and verifies signed requests. ``subject_id`` is ``sub_test``; every other field but
    ``campaign`` is null. Acknowledge it and change nothing."""

    type: ClassVar[str] = "webhook.test"


#: Every event type a platform can subscribe to, by name.
EVENT_TYPES: dict[str, type[EventData]] = {
    cls.type: cls for cls in (ConsentGiven, ConsentWithdrawn, ConsentExpired, SubjectErased,
                              WebhookTest)}

#: The ledger's event types that platforms hear about. Requests and refusals stay private: a
#: request comes from an unconfirmed form that anyone could have filled in with anyone's address.
LEDGER_EVENTS: dict[str, type[EventData]] = {
    GIVEN: ConsentGiven, WITHDRAWN: ConsentWithdrawn, EXPIRED: ConsentExpired}


def body(event: EventData, timestamp: datetime) -> dict:
    """The JSON body of ``event``: ``{"type", "timestamp", "data"}``."""
    return {"type": event.type, "timestamp": timestamp.isoformat(),
            "data": dataclasses.asdict(event)}


def event_id(row: ConsentEvent) -> str:
    """The stable id of a ledger event, the same in the feed and as the ``webhook-id``."""
    return "evt_" + row.hash[:32]


def _ledger_query(campaign: Campaign):
    # A receipt is issued in the same transaction and at the same instant as the events it
    # records, so (subject, instant) finds the receipt of an event.
    return (select(ConsentEvent, Subject.public_id, Subject.email, Receipt.id)
            .join(Subject, Subject.id == ConsentEvent.subject_id)
            .outerjoin(Receipt, and_(Receipt.subject_id == ConsentEvent.subject_id,
                                     Receipt.campaign_id == ConsentEvent.campaign_id,
                                     Receipt.issued_at == ConsentEvent.occurred_at))
            .where(ConsentEvent.campaign_id == campaign.id,
                   ConsentEvent.type.in_(list(LEDGER_EVENTS))))


def _from_row(campaign: Campaign, row: ConsentEvent, public_id: str, email: str | None,
              receipt_id: str | None) -> EventData:
    return LEDGER_EVENTS[row.type](
        campaign=campaign.slug, subject_id=public_id, email=email, purpose=row.purpose,
        network=row.network or None, status=row.type, receipt_id=receipt_id)


def ledger_body(session: Session, campaign: Campaign, ledger_event_id: int) -> dict | None:
    """The body of one ledger event of ``campaign``, or None if there is no such event."""
    found = session.execute(_ledger_query(campaign).where(ConsentEvent.id == ledger_event_id)
                            .limit(1)).first()
    if found is None:
        return None
    row, public_id, email, receipt_id = found
    return body(_from_row(campaign, row, public_id, email, receipt_id), row.occurred_at)


def feed(session: Session, campaign: Campaign, after: int, limit: int) -> tuple[list[dict], int]:
    """Up to ``limit`` of the campaign's consent events after ledger position ``after``.

    Returns the items and the position to continue from. Positions are the ledger's sequence
    numbers, which never change, so a cursor stays valid forever; when nothing is newer the
    position stays where it was and the platform polls again later.
    """
    rows = session.execute(_ledger_query(campaign).where(ConsentEvent.seq > after)
                           .order_by(ConsentEvent.seq).limit(limit)).all()
    items = []
    for row, public_id, email, receipt_id in rows:
        item = body(_from_row(campaign, row, public_id, email, receipt_id), row.occurred_at)
        items.append({"id": event_id(row), "cursor": str(row.seq), **item})
    return items, (rows[-1][0].seq if rows else after)
