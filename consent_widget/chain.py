"""The rules of a campaign's hash chain: how an event is hashed, how events replay onto a
state, and the check that a stored chain and its states still follow them.

The ledger (:mod:`consent_widget.ledger`) writes by these rules; auditors, the CLI's
``ledger verify`` and the tests verify by them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import hashrule
from .models import (EXPIRED, GIVEN, REFUSED, REQUESTED, WITHDRAWN, Campaign, ConsentEvent,
                     ConsentState, Notice, Signup, Subject)

#: The previous hash of a campaign's first event.
GENESIS = hashrule.GENESIS


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
    return row_hash({column: getattr(event, column) for column in _HASHED_COLUMNS}, campaign,
                    subject_public_id, notice_sha256, signup_public_id)


#: The event's own columns its hash covers; the rows it names are hashed by their public names.
_HASHED_COLUMNS = ("seq", "purpose", "network", "type", "occurred_at", "method", "actor",
                   "origin", "locale", "prev_hash")


def row_hash(row, campaign: Campaign, subject_public_id: str, notice_sha256: str | None,
             signup_public_id: str | None) -> str:
    """SHA-256 of an event given as a mapping of its hashed columns (see :func:`event_hash`)."""
    body = {
        "campaign": campaign.slug,
        "seq": row["seq"],
        "subject": subject_public_id,
        "purpose": row["purpose"],
        "network": row["network"],
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "notice_sha256": notice_sha256,
        "signup": signup_public_id,
        "method": row["method"],
        "actor": row["actor"],
        "origin": row["origin"],
        "locale": row["locale"],
        "prev": row["prev_hash"],
    }
    return hashrule.event_hash(body)


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
