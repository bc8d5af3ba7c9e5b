"""Many consent questions at once: the batch check and the purge audit read the state here.

A batch of up to :data:`MAX_ENTRIES` emails or subject ids is answered with one query per chunk
of :data:`CHUNK` entries (an ``IN`` on the keyed hash or the subject id, joined to the state),
never one query per entry. Each answer is the same :class:`~consent_widget.state.StateView` a
single check gives, so the two always agree.
"""
from __future__ import annotations

import re
from datetime import datetime

import email_validator
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from .emails import MAX_EMAIL_LENGTH, lookup_hmac, normalise
from .models import EXPIRED, GIVEN, WITHDRAWN, Campaign, ConsentState, Notice, Subject, utcnow
from .state import StateView

MAX_ENTRIES = 10_000
#: Entries per query: well under SQLite's (32,766) and PostgreSQL's (65,535) limits on bound
#: parameters, and large enough that a 10,000-entry batch takes five round trips.
CHUNK = 2000

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: Plain ASCII addresses, which are almost all of them. For these, :func:`normalise` only trims
#: and lower-cases the domain, which this module does ~10 times faster than email-validator;
#: anything else (Unicode, IDNA labels, quoted local parts, odd TLDs) goes through normalise().
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")


def normalise_fast(address: str) -> str:
    """Exactly :func:`consent_widget.emails.normalise`, faster for plain ASCII addresses.

    Raises :class:`~consent_widget.emails.InvalidEmail` like it.
    """
    trimmed = address.strip() if isinstance(address, str) else address
    match = _PLAIN_ADDRESS.fullmatch(trimmed) if isinstance(trimmed, str) else None
    if match is None or len(trimmed) > MAX_EMAIL_LENGTH or len(match.group(1)) > 64:
        return normalise(address)
    domain = match.group(2).lower()
    labels = domain.split(".")
    if "--" in domain or labels[-1] in email_validator.SPECIAL_USE_DOMAIN_NAMES \
            or len(domain) > 253:
        return normalise(address)
    return f"{match.group(1)}@{domain}"


def _view(public_id: str, status: str | None, expires_at: datetime | None,
          receipt_id: str | None, given_at: datetime | None, version: int | None,
          now: datetime) -> StateView:
    # The same rules as state.state_of and state.effective_status, on a joined row; the tests
    # compare the two on a mixed population.
    if status is None:
        return StateView(status="unknown", subject_id=public_id)
    if status == GIVEN and expires_at is not None and expires_at <= now:
        status = EXPIRED
    if status != GIVEN:
        return StateView(status=status, subject_id=public_id,
                         receipt_id=receipt_id if status in (WITHDRAWN, EXPIRED) else None)
    return StateView(status=status, subject_id=public_id, receipt_id=receipt_id,
                            given_at=given_at, notice_version=version)


def _lookup(session: Session, campaign: Campaign, purpose: str, network: str, column,
            keys: list[str], now: datetime) -> list[StateView]:
    state_join = and_(ConsentState.campaign_id == campaign.id,
                      ConsentState.subject_id == Subject.id,
                      ConsentState.purpose == purpose, ConsentState.network == network)
    found: dict[str, StateView] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = sorted(set(keys[start:start + CHUNK]))
        # Through the session's connection, not the ORM: plain rows, none of the ORM's
        # per-row bookkeeping, which would cost more than the query itself.
        rows = session.connection().execute(
            select(column, Subject.public_id, ConsentState.status, ConsentState.expires_at,
                   ConsentState.receipt_id, ConsentState.given_at, Notice.version)
            .outerjoin(ConsentState, state_join)
            .outerjoin(Notice, Notice.id == ConsentState.notice_id)
            .where(Subject.campaign_id == campaign.id, column.in_(chunk)))
        for key, *fields in rows:
            found[key] = _view(*fields, now)
    unknown = StateView(status="unknown")
    return [found.get(key, unknown) for key in keys]


def states_by_email(session: Session, campaign: Campaign, purpose: str, network: str,
                    addresses: list[str], key: bytes,
                    now: datetime | None = None) -> list[StateView]:
    """The state of each normalised address, in order (``unknown`` for strangers)."""
    hmacs = [lookup_hmac(key, address) for address in addresses]
    return _lookup(session, campaign, purpose, network, Subject.email_hmac, hmacs,
                   now or utcnow())


def states_by_subject(session: Session, campaign: Campaign, purpose: str, network: str,
                      public_ids: list[str], now: datetime | None = None) -> list[StateView]:
    """The state of each subject id, in order (``unknown`` for ids of no subject here)."""
    return _lookup(session, campaign, purpose, network, Subject.public_id, public_ids,
                   now or utcnow())
