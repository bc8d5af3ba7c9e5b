"""``db.driver_rows``: the hot path's reads, run on the driver's cursor, give the rows
SQLAlchemy's own execution gives, values converted alike, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from consent_widget import db, oauth, state
from consent_widget.emails import lookup_hmac, lookup_key, normalise
from consent_widget.models import Subject, utcnow
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


def test_an_in_list_is_refused_rather_than_run_unexpanded(app):
    with app.app_context(), pytest.raises(ValueError, match="IN list"):
        db.driver_rows(db.connection(), state._STATEMENTS["email_hmacs", "expanding"],
                       {"campaign_id": 1, "purpose": "newsletter", "network": "", "keys": ["a"],
                        "now": utcnow()})


def test_a_driver_error_comes_as_sqlalchemys_so_the_apps_handlers_see_it(app):
    # A value the driver cannot bind: the app's handlers know SQLAlchemy's exceptions only
    # (a value the database cannot store is a 400, not a 500).
    with app.app_context(), pytest.raises(DBAPIError):
        db.driver_rows(db.connection(), state._STATEMENTS["email_hmacs", "one"],
                       {"campaign_id": 1, "purpose": "newsletter", "network": "",
                        "keys": object(), "now": utcnow()})
