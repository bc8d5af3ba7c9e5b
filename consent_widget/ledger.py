"""The domain: consent events appended to a per-campaign hash chain, and the state they imply.

Every change of consent is a :class:`~consent_widget.models.ConsentEvent`, written once and never
edited. Each event stores the hash of the campaign's previous event, so altering or removing a
row breaks the chain, which :func:`consent_widget.chain.verify_chain` detects. The current state
(:class:`~consent_widget.models.ConsentState`) is updated in the same transaction by replaying the
event onto it with :func:`~consent_widget.chain.next_status`, so it always equals a replay of
the ledger.

Nothing here reads the HTTP request: the edges parse their input and call one function here.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import bindparam, inspect, insert, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import db, keys, loaded, mail, metrics, notices, receipts, webhooks
from .chain import next_status, row_hash
from .emails import lookup_hmac, normalise
from .models import (GIVEN, REFUSED, REQUESTED, WITHDRAWN, Campaign, ConsentEvent,
                     ConsentState, Notice, Receipt, Signup, Subject, utcnow)


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


# The ledger's writes are plain INSERT and UPDATE statements rather than the ORM's unit of work,
# which costs more than the statements themselves and is paid while the ledger lock is held. The
# ORM objects the callers hold are kept equal to the rows (set_committed_value), so that what
# they read later in the transaction is what was written.
_EVENTS = ConsentEvent.__table__
_STATES = ConsentState.__table__
_CAMPAIGNS = Campaign.__table__
_SIGNUPS = Signup.__table__
_INSERT_EVENTS = insert(_EVENTS).returning(_EVENTS.c.id, _EVENTS.c.seq)
_INSERT_STATES = insert(_STATES).returning(_STATES.c.id, _STATES.c.purpose, _STATES.c.network)
_UPDATE_STATES = update(_STATES).where(_STATES.c.id == bindparam("state_id"))
_MOVE_HEAD = (update(_CAMPAIGNS).where(_CAMPAIGNS.c.id == bindparam("campaign"))
              .values(ledger_seq=bindparam("seq"), ledger_head=bindparam("head")))
_CONFIRM_SIGNUP = (update(_SIGNUPS).where(_SIGNUPS.c.id == bindparam("signup"))
                   .values(confirmed_at=bindparam("now")))
_LOCK = (update(_CAMPAIGNS).where(_CAMPAIGNS.c.id == bindparam("campaign"))
         .values(ledger_seq=_CAMPAIGNS.c.ledger_seq)
         .returning(_CAMPAIGNS.c.ledger_seq, _CAMPAIGNS.c.ledger_head))
# Read under the lock, so read afresh: another process may have changed them since this
# session last read them.
_STATES_OF = (select(ConsentState).where(ConsentState.campaign_id == bindparam("campaign"),
                                         ConsentState.subject_id == bindparam("subject"))
              .execution_options(populate_existing=True))
_SUBJECT_BY_HMAC = (select(Subject).where(Subject.campaign_id == bindparam("campaign"),
                                          Subject.email_hmac == bindparam("digest"))
                    .execution_options(populate_existing=True))
#: Whether the address is known, read on the driver's cursor: most signups are a first one,
#: and reading nothing through the ORM costs ten times what the read costs SQLite.
_SUBJECT_ID_BY_HMAC = select(Subject.id).where(Subject.campaign_id == bindparam("campaign"),
                                               Subject.email_hmac == bindparam("digest"))
_NEWER = aliased(Signup)
#: Whether the subject submitted the form again after the signup in the outer query.
_SUPERSEDED = select(_NEWER.id).where(
    _NEWER.campaign_id == Signup.campaign_id, _NEWER.subject_id == Signup.subject_id,
    _NEWER.id > Signup.id).exists()
_SIGNUP_NOW = (select(Signup, Subject, _SUPERSEDED)
    .join(Subject, Subject.id == Signup.subject_id).where(Signup.id == bindparam("signup"))
    .execution_options(populate_existing=True))
#: (attribute, column) of each mapped column of the signup and the subject.
_SIGNUP_COLUMNS = tuple((prop.key, prop.columns[0]) for prop in inspect(Signup).column_attrs)
_SUBJECT_COLUMNS = tuple((prop.key, prop.columns[0]) for prop in inspect(Subject).column_attrs)
#: :data:`_SIGNUP_NOW` as plain columns, read on the driver's cursor: the objects the caller
#: holds are refreshed from them, which costs a fraction of the ORM's loading.
_SIGNUP_NOW_ROW = (select(*(column.label("signup_" + key) for key, column in _SIGNUP_COLUMNS),
                          *(column.label("subject_" + key) for key, column in _SUBJECT_COLUMNS),
                          _SUPERSEDED.label("superseded"))
                   .join_from(Signup, Subject, Subject.id == Signup.subject_id)
                   .where(Signup.id == bindparam("signup")))
_INSERT_RETURNING_ID = {model: insert(model.__table__).returning(model.__table__.c.id)
                        for model in (Subject, Signup)}


def _insert(session: Session, model, **values):
    """Insert one row of ``model``; return it as an object outside the session, with its id."""
    [(row_id,)] = db.driver_write(session.connection(), _INSERT_RETURNING_ID[model], values)
    return loaded.transient(model, {"id": row_id, **values})


def lock(session: Session, campaign: Campaign) -> None:
    """Take the campaign's ledger lock and read its head.

    Updating the campaign row first serialises appenders on PostgreSQL (row lock) and SQLite
    (write lock), so two transactions can never chain onto the same head. The same statement
    returns the head, which only the lock holder can move.
    """
    session.flush()  # a campaign row changed earlier in this transaction is written first
    [(seq, head)] = db.driver_write(session.connection(), _LOCK, {"campaign": campaign.id})
    set_committed_value(campaign, "ledger_seq", seq)
    set_committed_value(campaign, "ledger_head", head)


def _states_under_lock(session: Session, campaign: Campaign,
                       subject: Subject) -> dict[str, ConsentState]:
    """The subject's states by ``"purpose:network"``, read afresh (another process may have
    changed them since this session last read them).

    Read on the driver's cursor as plain objects, a fraction of the ORM's cost, unless this
    session holds one of them as an ORM object already: that one is then refreshed (and kept
    equal to what is written), so that nothing the session reads later is stale.
    """
    params = {"campaign": campaign.id, "subject": subject.id}
    loaded.flush_pending(session)
    rows = db.driver_rows(session.connection(), _STATE_ROWS, params)
    held = session.identity_map
    if any(identity_key(ConsentState, row.id) in held for row in rows):
        rows = session.scalars(_STATES_OF, params)
        return {row.purpose + ":" + row.network: row for row in rows}
    return {row.purpose + ":" + row.network: SimpleNamespace(**row._asdict()) for row in rows}


def _set_committed(state, name: str, value) -> None:
    """Set a state's value as written: committed on an ORM object, plainly on a plain one."""
    if isinstance(state, ConsentState):
        set_committed_value(state, name, value)
    else:
        setattr(state, name, value)


def _append_all(session: Session, campaign: Campaign, subject: Subject, entries, *, method: str,
                now: datetime, states: dict[str, ConsentState], actor: str = "subject",
                signup: Signup | None = None, origin: str = "",
                locale: str = "") -> list[SimpleNamespace]:
    """Append one event per ``(purpose, network, type, notice)`` of ``entries``, in order, and
    replay each onto ``states`` (the subject's states by item, updated in place); return the
    events' columns, ids included.

    The caller holds the ledger lock (see :func:`lock`) for the whole transaction. The events
    are inserted in one statement, the new states in another, the changed states in a third.
    """
    if not entries:
        return []
    seq, head = campaign.ledger_seq, campaign.ledger_head
    rows, shown = [], []
    for purpose, network, event_type, notice in entries:
        seq += 1
        row = {"campaign_id": campaign.id, "seq": seq, "subject_id": subject.id,
               "purpose": purpose, "network": network, "type": event_type, "occurred_at": now,
               "notice_id": notice.id if notice else None,
               "signup_id": signup.id if signup else None, "method": method, "actor": actor,
               "origin": origin[:2000], "locale": locale, "prev_hash": head}
        row["hash"] = head = row_hash(row, campaign, subject.public_id,
                                      notice.text_sha256 if notice else None,
                                      signup.public_id if signup else None)
        rows.append(row)
        shown.append(notice)
    connection = session.connection()
    ids = {row_seq: row_id
           for row_id, row_seq in db.driver_write(connection, _INSERT_EVENTS, rows)}
    db.driver_write(connection, _MOVE_HEAD, {"campaign": campaign.id, "seq": seq, "head": head})
    set_committed_value(campaign, "ledger_seq", seq)
    set_committed_value(campaign, "ledger_head", head)
    # Plain namespaces rather than ORM objects, which cost more to build than to insert.
    appended = [SimpleNamespace(id=ids[row["seq"]], **row) for row in rows]
    _write_states(session, campaign, subject, appended, shown, states)
    for event in appended:
        if event.type == WITHDRAWN:
            metrics.count_on_commit(session, metrics.WITHDRAWALS, event.purpose)
        # In the event's transaction: a platform hears of every event, and only of events kept.
        webhooks.queue_ledger_event(session, campaign, event)
    return appended


def append(session: Session, campaign: Campaign, subject: Subject, purpose: str, network: str,
           event_type: str, *, method: str, now: datetime, actor: str = "subject",
           notice: Notice | None = None, signup: Signup | None = None, origin: str = "",
           locale: str = "") -> ConsentEvent:
    """Append one event to the campaign's chain and replay it onto the current state.

    The caller holds the ledger lock (see :func:`lock`) for the whole transaction.
    """
    [event] = _append_all(session, campaign, subject, [(purpose, network, event_type, notice)],
                          method=method, now=now, actor=actor, signup=signup, origin=origin,
                          locale=locale, states=_states_under_lock(session, campaign, subject))
    return ConsentEvent(**vars(event))


def _write_states(session: Session, campaign: Campaign, subject: Subject,
                  appended: list[SimpleNamespace], shown: list[Notice | None],
                  states: dict[str, ConsentState]) -> None:
    """Replay the appended events onto ``states`` and write the states that changed."""
    created: dict[str, ConsentState] = {}
    changed: dict[int, dict] = {}
    for event, notice in zip(appended, shown):
        item = event.purpose + ":" + event.network
        state = states.get(item)
        values = _replayed(campaign, state, event, notice)
        if values is None:
            continue
        if state is None or item in created:
            if state is None:
                # A plain namespace, as the states read under the lock are: an ORM object
                # would cost more to build than its row costs to insert.
                state = states[item] = created[item] = SimpleNamespace(
                    id=None, campaign_id=campaign.id, subject_id=subject.id,
                    purpose=event.purpose, network=event.network, receipt_id=None)
            for name, value in values.items():
                setattr(state, name, value)
        else:
            changed.setdefault(state.id, {"state_id": state.id}).update(values)
            for name, value in values.items():
                _set_committed(state, name, value)
    connection = session.connection()
    if created:
        inserted = db.driver_write(connection, _INSERT_STATES, [
            {column: getattr(state, column) for column in _STATE_COLUMNS}
            for state in created.values()])
        for state_id, purpose, network in inserted:
            created[purpose + ":" + network].id = state_id
    if changed:
        db.driver_write(connection, _UPDATE_STATES, list(changed.values()))


_STATE_COLUMNS = ("campaign_id", "subject_id", "purpose", "network", "status", "event_id",
                  "notice_id", "given_at", "expires_at", "receipt_id", "updated_at")


def _replayed(campaign: Campaign, state: ConsentState | None, event,
              notice: Notice | None) -> dict | None:
    """The state's new values once ``event`` is replayed onto it; None when it stays as it is."""
    status = next_status(state.status if state else None, event.type)
    if state is not None and status == state.status and event.type != status:
        return None  # a request or refusal that leaves a settled consent untouched
    values = {"status": status, "event_id": event.id, "updated_at": event.occurred_at,
              "notice_id": state.notice_id if state else None}
    if event.type == GIVEN:
        values.update(notice_id=notice.id if notice else None, given_at=event.occurred_at,
                      expires_at=event.occurred_at + timedelta(days=campaign.validity_days))
    else:
        values.update(given_at=None, expires_at=None)
        if event.type in (REQUESTED, REFUSED):
            values["notice_id"] = notice.id if notice else None
    return values


def find_subject(session: Session, campaign: Campaign, email: str, key: bytes) -> Subject | None:
    """The campaign's subject with this address, or None. Raises InvalidEmail for a bad address."""
    digest = lookup_hmac(key, normalise(email))
    return session.scalars(select(Subject).where(Subject.campaign_id == campaign.id,
                                                 Subject.email_hmac == digest)).first()


def subject_by_public_id(session: Session, campaign: Campaign, public_id: str) -> Subject | None:
    """The campaign's subject with this opaque id, or None (never another campaign's)."""
    return session.scalars(select(Subject).where(Subject.campaign_id == campaign.id,
                                                 Subject.public_id == public_id)).first()


def record_signup(session: Session, campaign: Campaign, email: str, choices: list[Choice], *,
                  key: bytes, locale: str, origin: str = "", gpc: bool = False,
                  now: datetime | None = None) -> Signup:
    """Record a widget submission: ``requested`` for each ticked box, ``refused`` for the others.

    Nothing is given until the emailed link is confirmed (double opt-in); a confirmation email is
    queued in the same transaction. A submission with nothing ticked is valid and records refusals.
    """
    now = now or utcnow()
    # Everything that needs no database is done before the lock, which is then held only for
    # the reads and writes that must see the newest ledger.
    address = normalise(email)
    digest = lookup_hmac(key, address)
    signup_values = dict(
        public_id="sgn_" + secrets.token_urlsafe(16), campaign_id=campaign.id, locale=locale,
        origin=origin[:2000], gpc=gpc, created_at=now, confirmed_at=None,
        choices={c.purpose + ":" + c.network: c.ticked for c in choices},
        offered={c.purpose + ":" + c.network: c.notice.id for c in choices},
    )
    new_subject = dict(campaign_id=campaign.id, public_id="sub_" + secrets.token_urlsafe(16),
                       email_hmac=digest, email=address, link_version=1, created_at=now,
                       erased_at=None)
    # The email for a person signing up for the first time, the usual case; someone known
    # already gets it again with the links of their own subject.
    texts = {c.purpose + ":" + c.network: c.notice.text for c in choices}
    email_if_new = mail.confirmation_email(campaign, SimpleNamespace(**new_subject),
                                           SimpleNamespace(**signup_values), texts)
    entries = [(c.purpose, c.network, REQUESTED if c.ticked else REFUSED, c.notice)
               for c in choices]
    lock(session, campaign)
    by_digest = {"campaign": campaign.id, "digest": digest}
    subject = session.scalars(_SUBJECT_BY_HMAC, by_digest).first() \
        if db.driver_rows(session.connection(), _SUBJECT_ID_BY_HMAC, by_digest) else None
    if subject is None:
        subject = _insert(session, Subject, **new_subject)
        states = {}
    else:
        email_if_new = None
        if subject.email is None:
            subject.email = address  # an erased subject signing up again
        states = _states_under_lock(session, campaign, subject)
    signup = _insert(session, Signup, subject_id=subject.id, **signup_values)
    set_committed_value(signup, "subject", subject)
    _append_all(session, campaign, subject, entries, method="widget", now=now, states=states,
                signup=signup, origin=origin, locale=locale)
    if email_if_new is not None:
        email_if_new.queue(session)
    else:
        mail.queue_confirmation(session, campaign, subject, signup, texts)
    metrics.count_on_commit(session, metrics.SIGNUPS)
    return signup


def _signup_now(session: Session, signup: Signup) -> tuple[Signup, Subject, bool]:
    """``signup`` and its subject as they are in the database now (read under the lock), and
    whether a newer signup of the subject exists.

    When the caller's signup and its subject belong to ``session`` (the confirmation link's
    case), they are refreshed in place from one driver-level read, as ``populate_existing``
    would refresh them; otherwise they are loaded by the ORM.
    """
    subject = signup.__dict__.get("subject")
    # Refreshed in place when they are this session's or in none (read outside any session,
    # as the confirmation link reads them): no other session can be reading them meanwhile.
    if subject is None or inspect(signup).session not in (None, session) \
            or inspect(subject).session not in (None, session):
        return session.execute(_SIGNUP_NOW, {"signup": signup.id}).one()
    rows = db.driver_rows(session.connection(), _SIGNUP_NOW_ROW, {"signup": signup.id})
    if not rows:
        raise NoResultFound("No row was found when one was required")
    row = rows[0]._asdict()
    for key, _column in _SIGNUP_COLUMNS:
        set_committed_value(signup, key, row["signup_" + key])
    for key, _column in _SUBJECT_COLUMNS:
        set_committed_value(subject, key, row["subject_" + key])
    return signup, subject, bool(row["superseded"])


def is_superseded(session: Session, signup: Signup) -> bool:
    """Whether the subject submitted the form again after ``signup`` (confirmed or not): an
    older confirmation link must never roll back a newer choice."""
    return bool(session.scalar(select(_SUPERSEDED).where(Signup.id == signup.id)))


def offered_notices(session: Session, campaign: Campaign, signup: Signup) -> dict[str, Notice]:
    """The notices a signup's form showed, by ``"purpose:network"``. Notices never change, so
    they may be read before the ledger lock is taken."""
    found = notices.by_ids(session, campaign, signup.offered.values())
    return {item: found.get(notice_id) for item, notice_id in signup.offered.items()}


@dataclass(frozen=True)
class PreparedConfirmation:
    """What confirming a signup will write, worked out before the ledger lock is taken.

    Made by :func:`prepare_confirmation` from the subject's address and states as they were
    read; :func:`confirm` writes it only if they are still the same under the lock, and works
    everything out again otherwise.
    """

    signup_id: int
    now: datetime
    seen: tuple
    entries: list
    receipt: Receipt
    email: mail.Email


def _seen(subject: Subject, states: dict[str, ConsentState]) -> tuple:
    """What a prepared confirmation depends on: the address, the links' version and the states."""
    return (subject.email, subject.link_version,
            {item: tuple(getattr(state, column) for column in _STATE_SEEN)
             for item, state in states.items()})


_STATE_SEEN = ("id", "status", "event_id", "notice_id", "given_at", "expires_at", "updated_at",
               "receipt_id")
_STATE_ROWS = select(*(_STATES.c[column] for column in ("id", *_STATE_COLUMNS))).where(
    _STATES.c.campaign_id == bindparam("campaign"), _STATES.c.subject_id == bindparam("subject"))


def _confirmation_entries(signup: Signup, states: dict[str, ConsentState],
                          offered: dict[str, Notice]) -> list[tuple]:
    entries = []
    for item, ticked in signup.choices.items():
        purpose, _, network = item.partition(":")
        current = states.get(item)
        if ticked:
            entries.append((purpose, network, GIVEN, offered[item]))
        elif current is not None and current.status == GIVEN:
            entries.append((purpose, network, WITHDRAWN, offered[item]))
    return entries


def prepare_confirmation(session: Session, campaign: Campaign, signup: Signup,
                         offered: dict[str, Notice], *,
                         reads=None) -> PreparedConfirmation | None:
    """Work out, in a read-only transaction before :func:`confirm`, the receipt and the email a
    confirmation of ``signup`` will write, so that the ledger lock is held for less time.

    Signing the receipt and composing the email depend only on the subject's states, which
    :func:`confirm` reads again under the lock; it uses this only if they did not change.
    Returns None when there is nothing worth preparing (the signup was confirmed, its address
    erased, nothing would be given or withdrawn, or no signing key exists yet, which the
    locked path creates: a transaction that only reads must not write it). ``reads`` is the
    connection the states and the receipt's facts are read on (``db.reader()``, say), by
    default the session's.
    """
    subject = signup.subject
    if signup.confirmed_at is not None or subject.email is None:
        return None
    now = utcnow()
    # Plain rows and namespaces, not ORM objects: nothing here is written, and building
    # instrumented objects would cost more than the reads.
    reads = reads if reads is not None else session.connection()
    states = {row.purpose + ":" + row.network: row
              for row in db.driver_rows(reads, _STATE_ROWS, {
                  "campaign": campaign.id, "subject": subject.id})}
    seen = _seen(subject, states)
    entries = _confirmation_entries(signup, states, offered)
    if not entries:
        return None
    # The events as they will be written, but for their ids (placeholders, negative so that no
    # row can have them) and their place in the chain, which only the lock holder knows.
    pending, after = {}, dict(states)
    for number, (purpose, network, event_type, notice) in enumerate(entries, start=1):
        event = pending[-number] = SimpleNamespace(
            id=-number, purpose=purpose, network=network, type=event_type, occurred_at=now,
            signup_id=signup.id, method="email_confirmation", actor="subject")
        item = purpose + ":" + network
        current = after.get(item)
        values = _replayed(campaign, current, event, notice)
        if values is not None:
            after[item] = SimpleNamespace(
                purpose=purpose, network=network,
                receipt_id=current.receipt_id if current is not None else None, **values)
    states_after = list(after.values())
    try:
        receipt = receipts.build(session, campaign, subject, now=now, locale=signup.locale,
                                 origin=signup.origin, method="email_confirmation",
                                 states=states_after, gpc=signup.gpc, pending_events=pending,
                                 create_key=False, reads=reads)
    except keys.NoSigningKey:
        return None
    email = mail.receipt_email(campaign, subject, receipt, signup.locale, states_after)
    return PreparedConfirmation(signup.id, now, seen, entries, receipt, email)


def confirm(session: Session, campaign: Campaign, signup: Signup, now: datetime | None = None,
            offered: dict[str, Notice] | None = None,
            prepared: PreparedConfirmation | None = None):
    """Confirm a signup (double opt-in): ``given`` for each ticked box, and a new receipt.

    Boxes left unticked on the confirmed form withdraw a consent given earlier, since the person
    has now confirmed that choice from their own inbox. Returns the receipt, or None when nothing
    is given or withdrawn. Raises AlreadyConfirmed or SignupSuperseded. ``offered`` are the
    signup's :func:`offered_notices` when the caller read them already, ``prepared`` what
    :func:`prepare_confirmation` made of them.
    """
    now = now or (prepared.now if prepared is not None else utcnow())
    if offered is None:
        offered = offered_notices(session, campaign, signup)
    lock(session, campaign)
    # The signup and its subject as they are now, and whether a newer signup exists: one read.
    signup, subject, superseded = _signup_now(session, signup)
    set_committed_value(signup, "subject", subject)  # so that callers need not load it again
    if signup.confirmed_at is not None:
        raise AlreadyConfirmed()
    if superseded or subject.email is None:
        raise SignupSuperseded()  # a newer choice, or the address was erased or purged since
    states = _states_under_lock(session, campaign, subject)
    entries = _confirmation_entries(signup, states, offered)
    if prepared is not None and (prepared.signup_id != signup.id or prepared.now != now
                                 or prepared.seen != _seen(subject, states)
                                 or prepared.entries != entries):
        prepared = None  # the states moved since it was prepared: work it out again
    db.driver_write(session.connection(), _CONFIRM_SIGNUP, {"signup": signup.id, "now": now})
    set_committed_value(signup, "confirmed_at", now)
    metrics.count_on_commit(session, metrics.CONFIRMATIONS)
    receipt = None
    if entries:
        _append_all(session, campaign, subject, entries, method="email_confirmation", now=now,
                    states=states, signup=signup, origin=signup.origin, locale=signup.locale)
        if prepared is not None:
            receipt = receipts.write(session, prepared.receipt, list(states.values()))
        else:
            # This signup is the subject's newest, so its Global Privacy Control signal is theirs.
            receipt = receipts.issue(session, campaign, subject, now=now, locale=signup.locale,
                                     origin=signup.origin, method="email_confirmation",
                                     states=list(states.values()), gpc=signup.gpc,
                                     confirmed_signup=signup.id)
    if prepared is not None:
        prepared.email.queue(session)
    else:
        mail.queue_receipt(session, campaign, subject, receipt, locale=signup.locale,
                           states=list(states.values()))
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
    states = _states_under_lock(session, campaign, subject)
    entries = [(state.purpose, state.network, WITHDRAWN, None) for state in states.values()
               if state.status == GIVEN and purpose in (None, state.purpose)
               and network in (None, state.network)]
    if not entries:
        return None
    _append_all(session, campaign, subject, entries, method=method, now=now, states=states,
                locale=locale)
    receipt = receipts.issue(session, campaign, subject, now=now, locale=locale, origin="",
                             method=method, states=list(states.values()))
    if notify:
        mail.queue_receipt(session, campaign, subject, receipt, locale=locale,
                           states=list(states.values()))
    return receipt
