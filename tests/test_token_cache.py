"""Bearer tokens are cached per process, yet a revocation made by any process is seen at once.

Two app instances share one database, as two servers behind a load balancer would: the second
one warms its cache with a successful check, the first one revokes, and the second one's next
check must be refused.
"""
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, update

from consent_widget import create_app, db, oauth
from consent_widget.models import OAuthRevocations, OAuthToken, utcnow
from helpers import give
from test_api import basic, check, platform, token  # noqa: F401 (fixtures)


@pytest.fixture
def other(app, app_config):
    """A second instance of the app on the same database, with its own token cache."""
    second = create_app(dict(app_config, DATABASE_URL=app.config["DATABASE_URL"]))
    yield second
    with second.app_context():
        db.engine().dispose()


def _warm(instance, token):
    """Two successful checks: the second one is answered from the cache."""
    for _ in range(2):
        response = check(instance.test_client(), token, email="a@example.test",
                         purpose="newsletter")
        assert response.status_code == 200, response.json


def _change_client(app, platform, change):
    with app.app_context():
        with db.transaction() as session:
            change(session, oauth.find_client(session, platform["client_id"]))


def test_a_client_revoked_by_another_instance_is_refused_at_once(app, other, platform, token):
    _warm(other, token)
    _change_client(app, platform, oauth.revoke_client)
    response = check(other.test_client(), token, email="a@example.test", purpose="newsletter")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


def test_a_rotated_secret_ends_the_cached_tokens_of_every_instance(app, other, platform, token):
    _warm(other, token)
    _change_client(app, platform, oauth.rotate_secret)
    assert check(other.test_client(), token, email="a@example.test",
                 purpose="newsletter").status_code == 401


def test_a_token_expired_in_the_database_is_refused_by_every_instance(app, other, token):
    _warm(other, token)
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(OAuthToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert check(other.test_client(), token, email="a@example.test",
                 purpose="newsletter").status_code == 401


def test_a_cached_token_expires_by_the_clock_without_any_database_change(app, other, token):
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(OAuthToken).values(expires_at=utcnow() + timedelta(seconds=2)))
    _warm(other, token)
    time.sleep(2.1)
    assert check(other.test_client(), token, email="a@example.test",
                 purpose="newsletter").status_code == 401


def test_a_cached_token_costs_no_statement_of_its_own(other, token, monkeypatch):
    # The counter that confirms a cached token is read in the statement of the answer: a check
    # with a warm cache is that one statement.
    _warm(other, token)
    statements = []
    run_on_driver = db._DriverStatement.rows

    def recorded(self, connection, params):
        statements.append(self.sql)
        return run_on_driver(self, connection, params)
    monkeypatch.setattr(db._DriverStatement, "rows", recorded)
    _warm(other, token)
    assert len(statements) == 2  # one per check
    assert all("oauth_revocations" in s and "consent_states" in s for s in statements)


def test_a_revoked_client_with_a_malformed_question_is_refused_not_answered(app, other,
                                                                           platform, token):
    # The counter is read with the answer; a question refused before it is read must not let
    # a client revoked since it was cached hear anything but 401.
    _warm(other, token)
    _change_client(app, platform, oauth.revoke_client)
    response = other.test_client().post("/api/v1/consents/check", json={"purpose": "nope"},
                                        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


def test_without_the_counters_row_every_check_is_authenticated_and_answered(app, other,
                                                                            token):
    give(app, "demo", "kept@example.test", newsletter=True)
    _warm(other, token)
    with app.app_context():
        with db.transaction() as session:
            session.execute(delete(OAuthRevocations))
    for _ in range(2):
        response = check(other.test_client(), token, email="kept@example.test",
                         purpose="newsletter")
        assert response.status_code == 200 and response.json["allowed"] is True
    assert check(other.test_client(), "not-a-token", email="kept@example.test",
                 purpose="newsletter").status_code == 401


def test_a_cached_token_is_checked_with_the_counter_alone(other, token, monkeypatch):
    _warm(other, token)
    statements = []
    with other.app_context():
        engine = db.engine()
    listener = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    # The hot path's reads go to the driver's cursor directly, past SQLAlchemy's events.
    run_on_driver = db._DriverStatement.rows

    def recorded(self, connection, params):
        statements.append(self.sql)
        return run_on_driver(self, connection, params)
    monkeypatch.setattr(db._DriverStatement, "rows", recorded)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        _warm(other, token)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert any("oauth_revocations" in s for s in statements)
    assert not any("oauth_tokens" in s for s in statements)


def test_an_unknown_token_is_refused_and_a_new_one_found_at_once(client, other, platform, token):
    _warm(other, token)
    assert check(other.test_client(), "not-a-token", email="a@example.test",
                 purpose="newsletter").status_code == 401
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=basic(platform["client_id"], platform["client_secret"]))
    _warm(other, response.json["access_token"])
