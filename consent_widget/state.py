"""The current consent state: a view of the ledger, read by the check API, pages and emails.

The ledger (:mod:`consent_widget.ledger`) writes it in the transaction of each event; this
module only reads it, so that mail, receipts and the API can use it without importing the
ledger's writers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import EXPIRED, GIVEN, WITHDRAWN, Campaign, ConsentState, Notice, Subject, utcnow


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


def states_by_item(session: Session, campaign: Campaign,
                   subject: Subject) -> dict[str, ConsentState]:
    """The subject's states keyed by ``"purpose:network"``."""
    rows = session.scalars(select(ConsentState).where(ConsentState.campaign_id == campaign.id,
                                                      ConsentState.subject_id == subject.id))
    return {row.purpose + ":" + row.network: row for row in rows}


def states_of(session: Session, campaign: Campaign, subject: Subject) -> list[ConsentState]:
    """The subject's current states, newsletter first, then networks by name."""
    rows = states_by_item(session, campaign, subject).values()
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
        # A withdrawal's or expiry's receipt is the platform's proof of when to stop.
        receipt = state.receipt_id if state is not None and status in (WITHDRAWN, EXPIRED) \
            else None
        return StateView(status=status, subject_id=subject.public_id, receipt_id=receipt)
    notice = session.get(Notice, state.notice_id) if state.notice_id else None
    return StateView(status=status, subject_id=subject.public_id, receipt_id=state.receipt_id,
                     given_at=state.given_at, notice_version=notice.version if notice else None)
