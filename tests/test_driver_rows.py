"""``db.driver_rows`` and ``db.driver_write``: the hot path's reads and the signup's writes, run
on the driver's cursor, give and store what SQLAlchemy's own execution does, values converted
alike, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from consent_widget import db, oauth, state
from consent_widget.emails import lookup_hmac, lookup_key, normalise
from consent_widget.models import ConsentEvent, OutboxMessage, Signup, Subject, utcnow
from helpers import give, withdraw


def both_ways(app, statement, params=None):
    """The statement's rows through SQLAlchemy's execution, then through the driver's cursor."""
    with app.app_context():
        connection = db.connection()
        through_sqlalchemy = [tuple(row) for row in connection.execute(statement, params or {})]
        on_the_driver = db.driver_rows(connection, statement, params)
    return through_sqlalchemy, on_the_driver


def test_state_reads_give_the_same_rows_with_the_same_types(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "bruno@example.test", networks=["facebook"])
    withdraw(app, "demo", "bruno@example.test", "social_matching")
    with app.app_context():
        key = lookup_hmac(lookup_key(app.config), normalise("ana@example.test"))
        other = lookup_hmac(lookup_key(app.config), normalise("bruno@example.test"))
        public_id = db.session().scalars(select(Subject.public_id)
                                         .where(Subject.email_hmac == key)).one()
    by_email = state._STATEMENTS["email_hmacs", "one"]
    now = utcnow()
    for params in ({"campaign_id": campaign.id, "purpose": "social_matching",
                    "network": "facebook", "keys": key, "now": now},
                   {"campaign_id": campaign.id, "purpose": "social_matching",
                    "network": "facebook", "keys": other, "now": now},
                   {"campaign_id": campaign.id, "purpose": "newsletter", "network": "",
                    "keys": key, "now": now}):
        expected, rows = both_ways(app, by_email, params)
        assert len(rows) == 1 and [tuple(row) for row in rows] == expected
        # Dates come back as datetimes, as SQLAlchemy's types make them (SQLite stores text).
        assert isinstance(rows[0].given_at, (datetime, type(None)))
    assert isinstance(rows[0].given_at, datetime) and rows[0][2] == "given"
    # A datetime parameter is bound as SQLAlchemy binds it: past the expiry, the consent is
    # read as expired by the statement itself.
    later = dict(params, now=now + timedelta(days=365 * 20))
    expected, rows = both_ways(app, by_email, later)
    assert [tuple(row) for row in rows] == expected and rows[0][2] == "expired"
    expected, rows = both_ways(app, state._STATEMENTS["public_ids", "one"], {
        "campaign_id": campaign.id, "purpose": "newsletter", "network": "",
        "keys": public_id, "now": now})
    assert [tuple(row) for row in rows] == expected and rows[0][0] == public_id
    # A key of no subject: no row, not an error.
    assert both_ways(app, by_email, dict(params, keys="0" * 64)) == ([], [])


def test_values_written_in_the_statement_are_bound_too(app):
    # The counter's statement names its one row by ``id == 1``, a value of the statement itself.
    expected, rows = both_ways(app, oauth._COUNTER_QUERY)
    assert [tuple(row) for row in rows] == expected == [(0,)]
    assert rows[0].counter == 0


#: A read with an IN list, and a value written in the statement itself (``type == ...``).
_EVENTS = ConsentEvent.__table__
_EVENTS_BY_ID_OR_REQUESTS = select(_EVENTS.c.id, _EVENTS.c.type, _EVENTS.c.occurred_at).where(
    or_(and_(_EVENTS.c.campaign_id == bindparam("campaign"),
             _EVENTS.c.id.in_(bindparam("ids", expanding=True))),
        and_(_EVENTS.c.type == "requested",
             _EVENTS.c.signup_id.in_(bindparam("signups", expanding=True))))
).order_by(_EVENTS.c.id)


def test_an_in_list_is_expanded_as_sqlalchemy_expands_it_for_each_size(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "bruno@example.test", networks=["facebook"])
    with app.app_context():
        ids = db.session().scalars(select(ConsentEvent.id).order_by(ConsentEvent.id)).all()
        signups = db.session().scalars(select(Signup.id).order_by(Signup.id)).all()
    assert len(ids) > 3 and len(signups) == 2
    sizes = [(ids[:0], []), (ids[:1], []), (ids[:2], signups[:1]), (ids, signups),
             (ids[1:3], signups[1:])]
    # More sizes than are kept compiled: those past the limit are made on each call, alike.
    sizes += [([ids[0]] * n, []) for n in range(3, db.MAX_IN_SIZES + 5)]
    for wanted, of_signups in sizes:
        params = {"campaign": campaign.id, "ids": wanted, "signups": of_signups}
        expected, rows = both_ways(app, _EVENTS_BY_ID_OR_REQUESTS, params)
        assert [tuple(row) for row in rows] == expected
        assert all(isinstance(row.occurred_at, datetime) for row in rows)
    # The first size, made again from its kept form, still gives its own rows.
    expected, rows = both_ways(app, _EVENTS_BY_ID_OR_REQUESTS,
                               {"campaign": campaign.id, "ids": ids[:1], "signups": []})
    assert [tuple(row) for row in rows] == expected and [row.id for row in rows] == ids[:1]
    # Another campaign's id gives nothing, however many are named.
    assert both_ways(app, _EVENTS_BY_ID_OR_REQUESTS,
                     {"campaign": campaign.id + 1, "ids": ids, "signups": []}) == ([], [])


def test_an_in_list_of_none_is_an_empty_one_as_sqlalchemy_reads_it(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    params = {"campaign": campaign.id, "ids": None, "signups": None}
    assert both_ways(app, _EVENTS_BY_ID_OR_REQUESTS, params) == ([], [])


def test_an_in_list_that_is_missing_or_not_a_list_is_refused_before_it_is_sent(app):
    with app.app_context():
        for params in ({"campaign": 1, "ids": [1]}, {"campaign": 1, "ids": 1, "signups": []},
                       # A parameter missing, for a size seen before and for one never seen.
                       {"ids": [1], "signups": []}, {"ids": [1] * 7, "signups": [2] * 5}):
            with pytest.raises(StatementError):
                db.driver_rows(db.connection(), _EVENTS_BY_ID_OR_REQUESTS, params)


def test_a_parameter_written_into_the_statement_at_each_execution_is_refused(app):
    statement = select(ConsentEvent.id).where(
        ConsentEvent.campaign_id == bindparam("campaign", literal_execute=True))
    with app.app_context(), pytest.raises(ValueError, match="literal_execute"):
        db.driver_rows(db.connection(), statement, {"campaign": 1})


def test_a_write_with_an_in_list_is_refused(app):
    statement = update(Signup.__table__).where(
        Signup.__table__.c.id.in_(bindparam("ids", expanding=True))).values(locale="fr")
    with app.app_context(), pytest.raises(ValueError, match="IN list"):
        db.driver_write(db.session().connection(), statement, {"ids": [1]})


def test_a_driver_error_comes_as_sqlalchemys_so_the_apps_handlers_see_it(app):
    # A value the driver cannot bind: the app's handlers know SQLAlchemy's exceptions only
    # (a value the database cannot store is a 400, not a 500).
    with app.app_context(), pytest.raises(DBAPIError):
        db.driver_rows(db.connection(), state._STATEMENTS["email_hmacs", "one"],
                       {"campaign_id": 1, "purpose": "newsletter", "network": "",
                        "keys": object(), "now": utcnow()})


# --- db.driver_write: the signup's writes ------------------------------------------------------

OUTBOX = OutboxMessage.__table__
# Built once, as driver statements are (their compiled forms are kept by statement).
INSERT_OUTBOX = insert(OUTBOX).returning(OUTBOX.c.id, OUTBOX.c.created_at)
UPDATE_OUTBOX = update(OUTBOX).where(OUTBOX.c.id == bindparam("message"))
INSERT_SUBJECT = insert(Subject.__table__)
INSERT_SUBJECT_RETURNING_ID = insert(Subject.__table__).returning(Subject.__table__.c.id)
INSERT_SIGNUP = insert(Signup.__table__)


def test_a_write_stores_what_sqlalchemys_execution_stores_defaults_included(app, campaign):
    # Columns left out take their defaults: constants (status, attempts) and functions (the
    # times, from utcnow), converted by the columns' types as SQLAlchemy converts them.
    values = {"campaign_id": campaign.id, "kind": "email", "recipient": "ana@example.test",
              "payload": '{"to": "ana@example.test"}'}
    before = utcnow()
    with app.app_context():
        with db.transaction() as session:
            connection = session.connection()
            [(by_driver, created)] = db.driver_write(connection, INSERT_OUTBOX, values)
            by_sqlalchemy = connection.execute(insert(OUTBOX).returning(OUTBOX.c.id),
                                               values).scalar_one()
        rows = {row.id: row for row in db.session().scalars(select(OutboxMessage))}
    assert isinstance(created, datetime) and created >= before
    driven, reference = rows[by_driver], rows[by_sqlalchemy]
    for column in ("campaign_id", "kind", "recipient", "payload", "status", "attempts",
                   "claimed_until", "last_error", "last_status", "sent_at"):
        assert getattr(driven, column) == getattr(reference, column), column
    assert driven.status == "pending" and driven.attempts == 0
    assert before <= driven.created_at <= reference.created_at
    assert driven.next_attempt_at.tzinfo is not None


def test_a_write_of_many_rows_returns_each_rows_values_in_order(app, campaign):
    rows = [{"campaign_id": campaign.id, "kind": "email", "recipient": f"r{i}@example.test",
             "payload": str(i)} for i in range(3)]
    with app.app_context():
        with db.transaction() as session:
            returned = db.driver_write(session.connection(), INSERT_OUTBOX, rows)
            ids = [row.id for row in returned]
            # Many rows without RETURNING: one execution of the driver's, each row changed.
            db.driver_write(session.connection(), UPDATE_OUTBOX,
                            [{"message": message, "attempts": 10 + i}
                             for i, message in enumerate(ids)])
        stored = db.session().execute(select(OutboxMessage.id, OutboxMessage.payload,
                                             OutboxMessage.attempts)
                                      .order_by(OutboxMessage.id)).all()
    assert [tuple(row) for row in stored] == [(ids[i], str(i), 10 + i) for i in range(3)]
    assert ids == sorted(ids)


def test_json_columns_are_written_as_sqlalchemy_writes_them(app, campaign):
    choices = {"newsletter:": True, "social_matching:facebook": False}
    with app.app_context():
        with db.transaction() as session:
            [(subject_id,)] = db.driver_write(
                session.connection(), INSERT_SUBJECT_RETURNING_ID,
                {"campaign_id": campaign.id, "public_id": "sub_driver", "email_hmac": "a" * 64,
                 "email": "ana@example.test"})
            db.driver_write(session.connection(), INSERT_SIGNUP, {
                "public_id": "sgn_driver", "campaign_id": campaign.id, "subject_id": subject_id,
                "choices": choices, "offered": {}, "locale": "fr"})
        signup = db.session().scalars(select(Signup)).one()
        assert signup.choices == choices and signup.offered == {} and signup.gpc is False
        assert signup.subject.link_version == 1 and signup.subject.email == "ana@example.test"


def test_a_failed_write_raises_sqlalchemys_error_and_its_transaction_keeps_nothing(app, campaign):
    subject = {"campaign_id": campaign.id, "public_id": "sub_twice", "email_hmac": "b" * 64,
               "email": "bruno@example.test"}
    statement = INSERT_SUBJECT
    with app.app_context():
        with pytest.raises(IntegrityError):
            with db.transaction() as session:
                db.driver_write(session.connection(), statement, subject)
                db.driver_write(session.connection(), statement, subject)  # same public id
        assert db.session().scalars(select(Subject)).all() == []


def test_parameter_sets_of_one_write_must_give_the_same_columns(app, campaign):
    with app.app_context():
        with pytest.raises(ValueError, match="same columns"), db.transaction() as session:
            db.driver_write(session.connection(), INSERT_OUTBOX, OUTBOX_ROW)
            db.driver_write(session.connection(), INSERT_OUTBOX, [
                {"kind": "email", "recipient": "a@example.test", "payload": "1"},
                {"kind": "email", "recipient": "b@example.test", "payload": "2",
                 "attempts": 3}])
        # Refused before anything was sent, and the transaction's earlier write rolled back.
        assert db.session().scalars(select(OutboxMessage)).all() == []


OUTBOX_ROW = {"kind": "email", "recipient": "a@example.test", "payload": "x"}
#: None written in the statement itself, and a value of the statement over a column's default.
INSERT_WITH_NONE = insert(OUTBOX).values(last_status=None, last_error="set").returning(
    OUTBOX.c.id)
UPDATE_TO_NONE = (update(OUTBOX).where(OUTBOX.c.id == bindparam("message"))
                  .values(last_status=None, claimed_until=None))


def _stored(message_id):
    row = db.session().execute(select(OUTBOX).where(OUTBOX.c.id == message_id)).one()
    return {name: value for name, value in row._mapping.items()
            if name not in ("id", "created_at", "next_attempt_at")}


def test_none_written_in_the_statement_is_stored_as_sqlalchemy_stores_it(app, campaign):
    with app.app_context():
        with db.transaction() as session:
            ours = db.driver_write(session.connection(), INSERT_WITH_NONE, OUTBOX_ROW)[0].id
            theirs = session.execute(INSERT_WITH_NONE, OUTBOX_ROW).scalar_one()
        assert _stored(ours) == _stored(theirs)
        assert _stored(ours)["last_status"] is None and _stored(ours)["last_error"] == "set"
        with db.transaction() as session:
            session.execute(update(OUTBOX).values(last_status=500, claimed_until=utcnow()))
            db.driver_write(session.connection(), UPDATE_TO_NONE, {"message": ours})
            session.execute(UPDATE_TO_NONE, {"message": theirs})
        assert _stored(ours) == _stored(theirs)
        assert _stored(ours)["last_status"] is None and _stored(ours)["claimed_until"] is None


def test_a_missing_or_unconvertible_parameter_is_sqlalchemys_error_and_nothing_is_written(
        app, campaign):
    with app.app_context():
        for params in ({"kind": "email", "recipient": "a@example.test"},  # no payload
                       dict(OUTBOX_ROW, next_attempt_at="not a datetime")):
            with pytest.raises(StatementError), db.transaction() as session:
                db.driver_write(session.connection(), INSERT_OUTBOX, OUTBOX_ROW)
                db.driver_write(session.connection(), INSERT_OUTBOX, params)
            assert db.session().scalars(select(OutboxMessage)).all() == []
        with pytest.raises(StatementError):
            db.driver_rows(db.reader(), state._STATEMENTS["email_hmacs", "one"], {"keys": "x"})
