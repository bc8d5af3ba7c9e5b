"""The current consent state: a view of the ledger, read by the check API, pages and emails.

The ledger (:mod:`consent_widget.ledger`) writes it in the transaction of each event; this
module only reads it, so that mail, receipts and the API can use it without importing the
ledger's writers.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (ARRAY, JSON, Connection, Select, String, and_, any_, bindparam, case,
                        func, select)
from sqlalchemy.orm import Session

from . import db
from .models import (EXPIRED, GIVEN, NEWSLETTER, WITHDRAWN, Campaign, ConsentState, Notice,
                     OAuthRevocations, Subject, utcnow)


class StateView(NamedTuple):
    """What the check API answers for one subject, purpose and network.

    A named tuple rather than a frozen dataclass: a batch builds 10,000 of them, and a tuple is
    built several times faster.
    """

    status: str
    subject_id: str | None = None
    receipt_id: str | None = None
    given_at: datetime | None = None
    notice_version: int | None = None

    @property
    def allowed(self) -> bool:
        """Only a confirmed, unwithdrawn, unexpired consent allows processing."""
        return self.status == GIVEN


#: The answer about someone a campaign has never recorded.
UNKNOWN = StateView(status="unknown")


def states_by_item(session: Session, campaign: Campaign,
                   subject: Subject) -> dict[str, ConsentState]:
    """The subject's states keyed by ``"purpose:network"``."""
    rows = session.scalars(select(ConsentState).where(ConsentState.campaign_id == campaign.id,
                                                      ConsentState.subject_id == subject.id))
    return {row.purpose + ":" + row.network: row for row in rows}


def states_of(session: Session, campaign: Campaign, subject: Subject) -> list[ConsentState]:
    """The subject's current states, newsletter first, then networks by name."""
    return sorted(states_by_item(session, campaign, subject).values(), key=display_order)


def display_order(state) -> tuple:
    """The order states are shown and listed in: the newsletter first, then networks by name."""
    return (state.purpose != NEWSLETTER, state.purpose, state.network)


def effective_status(state: ConsentState | None, now: datetime) -> str:
    """The status a state has now: ``given`` past its validity reads as ``expired``."""
    if state is None:
        return "unknown"
    if state.status == GIVEN and state.expires_at is not None and state.expires_at <= now:
        return EXPIRED
    return state.status


def effective_status_column(now: datetime):
    """:func:`effective_status` as an SQL expression over ``consent_states``, for queries that
    count statuses without reading each row."""
    return case(((ConsentState.status == GIVEN) & (ConsentState.expires_at <= now), EXPIRED),
                else_=ConsentState.status)


def view(public_id: str | None, status: str | None, expires_at: datetime | None,
         receipt_id: str | None, given_at: datetime | None, notice_version: int | None,
         now: datetime) -> StateView:
    """The answer for one subject from its state's fields; ``status`` None means never asked.

    The one place the rules live: a single check, a batch and the ORM path all answer with it.
    :func:`lookup` passes no ``expires_at``: its query has already read a lapsed consent as
    expired, with :func:`effective_status_column`, the SQL form of the same rule.
    """
    if public_id is None:
        return UNKNOWN
    if status is None:
        return StateView(status="unknown", subject_id=public_id)
    if status == GIVEN and expires_at is not None and expires_at <= now:
        status = EXPIRED
    if status != GIVEN:
        # A withdrawal's or expiry's receipt is the platform's proof of when to stop.
        return StateView(status=status, subject_id=public_id,
                         receipt_id=receipt_id if status in (WITHDRAWN, EXPIRED) else None)
    return StateView(status=status, subject_id=public_id, receipt_id=receipt_id,
                     given_at=given_at, notice_version=notice_version)


def state_of(session: Session, campaign: Campaign, subject: Subject | None, purpose: str,
             network: str, now: datetime | None = None) -> StateView:
    """What a platform may do with this subject for exactly this purpose and network."""
    if subject is None:
        return UNKNOWN
    state = session.scalars(select(ConsentState).where(
        ConsentState.campaign_id == campaign.id, ConsentState.subject_id == subject.id,
        ConsentState.purpose == purpose, ConsentState.network == network)).first()
    now = now or utcnow()
    if state is None:
        return view(subject.public_id, None, None, None, None, None, now)
    # The notice's version is only part of a consent that holds.
    notice = session.get(Notice, state.notice_id) \
        if state.notice_id and effective_status(state, now) == GIVEN else None
    return view(subject.public_id, state.status, state.expires_at, state.receipt_id,
                state.given_at, notice.version if notice else None, now)


#: SQLite's JSON functions are built in from 3.38 (before, only if it was compiled with them).
_SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 38)


def _key_form(dialect_name: str, count: int) -> str:
    """How ``count`` keys are bound for this database (see :func:`_matches`)."""
    if count == 1:
        return "one"
    if dialect_name == "postgresql":
        return "array"
    return "json" if dialect_name == "sqlite" and _SQLITE_JSON else "expanding"


def _matches(column, form: str):
    """``column`` is ``:keys``: one key (``=``), or one of a list bound as a single parameter.

    SQLAlchemy's expanding ``IN`` renders and binds a parameter per key at each execution,
    which took a tenth of a 10,000-entry batch's lookup. PostgreSQL is given the list as an
    array (``= ANY``), SQLite as a JSON array (``json_each``); another database, or an SQLite
    without JSON functions, gets the expanding ``IN``.
    """
    if form == "one":
        return column == bindparam("keys")
    if form == "array":
        return column == any_(bindparam("keys", type_=ARRAY(String)))
    if form == "json":
        keys = func.json_each(bindparam("keys", type_=JSON)).table_valued("value")
        return column.in_(select(keys.c.value))
    return column.in_(bindparam("keys", expanding=True))


def _answer_columns(column) -> tuple:
    return (column, Subject.public_id, effective_status_column(bindparam("now")),
            ConsentState.receipt_id, ConsentState.given_at, Notice.version)


def _state_join():
    return and_(ConsentState.campaign_id == Subject.campaign_id,
                ConsentState.subject_id == Subject.id,
                ConsentState.purpose == bindparam("purpose"),
                ConsentState.network == bindparam("network"))


def _lookup_query(column, form: str) -> Select:
    """Subjects whose ``column`` is ``:keys`` (bound in ``form``, see :func:`_matches`), each
    with its state for one question at ``:now``.

    The database tells a lapsed consent from one that holds (:func:`effective_status_column`),
    so the expiry is compared there instead of read back: turning each row's ``expires_at``
    into a datetime took a tenth of a 10,000-entry batch's lookup.
    """
    return (select(*_answer_columns(column))
            .select_from(Subject)
            .outerjoin(ConsentState, _state_join())
            .outerjoin(Notice, Notice.id == ConsentState.notice_id)
            .where(Subject.campaign_id == bindparam("campaign_id"), _matches(column, form)))


def _counted_lookup_query(column) -> Select:
    """One key's answer (:func:`_lookup_query`) with the OAuth revocation counter, in one row.

    The row is the counter's; the subject, its state and notice are outer-joined onto it, so a
    key of no subject still answers the counter (with nulls), and a database without the
    counter's row answers nothing at all.
    """
    return (select(OAuthRevocations.counter, *_answer_columns(column))
            .select_from(OAuthRevocations)
            .outerjoin(Subject, and_(Subject.campaign_id == bindparam("campaign_id"),
                                     column == bindparam("keys")))
            .outerjoin(ConsentState, _state_join())
            .outerjoin(Notice, Notice.id == ConsentState.notice_id)
            .where(OAuthRevocations.id == 1))


#: Built once: the check API answers every request with one of these statements. A single key
#: gets a plain ``=``: binding a list is a step of its own on every execution.
_STATEMENTS = {(by, form): _lookup_query(column, form)
               for by, column in (("email_hmacs", Subject.email_hmac),
                                  ("public_ids", Subject.public_id))
               for form in ("one", "array", "json", "expanding")}
_COUNTED_STATEMENTS = {"email_hmacs": _counted_lookup_query(Subject.email_hmac),
                       "public_ids": _counted_lookup_query(Subject.public_id)}


def lookup(reader: Session | Connection | db.Reader, campaign_id: int, purpose: str,
           network: str, *,
           email_hmacs: list[str] | None = None, public_ids: list[str] | None = None,
           now: datetime | None = None) -> dict[str, StateView]:
    """The answers for the subjects found by keyed email hash or by subject id, by that key.

    One statement, through a connection (``reader``'s own when it is a session) rather than the
    ORM: plain rows, none of the ORM's per-row bookkeeping, which would cost more than the
    query itself. Keys of no subject of this campaign are absent from the result. A
    :class:`db.Reader` (the single check's) may ask for one key only.
    """
    by, keys = ("email_hmacs", email_hmacs) if public_ids is None else ("public_ids", public_ids)
    connection = reader.connection() if isinstance(reader, Session) else reader
    form = _key_form(connection.dialect.name, len(keys))
    now = now or utcnow()
    statement = _STATEMENTS[by, form]
    params = {"campaign_id": campaign_id, "purpose": purpose, "network": network, "now": now,
              "keys": keys[0] if form == "one" else keys}
    # A single key, the check's hot path, runs on the driver's cursor; a list of keys is bound
    # by SQLAlchemy.
    rows = db.driver_rows(connection, statement, params) if form == "one" \
        else connection.execute(statement, params).all()
    # The status read is already the effective one: no expiry left for view() to compare.
    return {key: view(public_id, status, None, receipt_id, given_at, notice_version, now)
            for key, public_id, status, receipt_id, given_at, notice_version in rows}


def counted_lookup(reader: Session | Connection | db.Reader, campaign_id: int, purpose: str,
                   network: str, *, email_hmac: str | None = None, public_id: str | None = None,
                   now: datetime | None = None) -> tuple[int | None, StateView]:
    """The OAuth revocation counter and the answer for one subject (by keyed email hash or by
    subject id), read in one statement: one snapshot, one round trip.

    For the single check, whose bearer token the process has cached: the counter read with the
    answer confirms that no token or client has changed since (see
    :meth:`consent_widget.oauth.TokenCache.peek`), and the answer costs no second statement.
    The counter is None when the database has no counter row (a database emptied by hand):
    then nothing is known of the tokens, and the answer is read by a statement of its own.
    """
    by, key = ("email_hmacs", email_hmac) if public_id is None else ("public_ids", public_id)
    now = now or utcnow()
    rows = db.driver_rows(reader, _COUNTED_STATEMENTS[by], {
        "campaign_id": campaign_id, "purpose": purpose, "network": network, "now": now,
        "keys": key})
    if not rows:
        return None, lookup(reader, campaign_id, purpose, network, now=now,
                            **{by: [key]}).get(key, UNKNOWN)
    counter, _key, public_id, status, receipt_id, given_at, notice_version = rows[0]
    # The status read is already the effective one, as in lookup().
    return counter, view(public_id, status, None, receipt_id, given_at, notice_version, now)
