"""What only PostgreSQL can get wrong: the types the one migration creates there, time zones,
and values SQLite stores but PostgreSQL refuses. The rest of the suite runs on both databases."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from consent_widget import chain, create_app, db
from consent_widget.campaigns import create_campaign
from consent_widget.models import Campaign, ConsentEvent
from conftest import POSTGRES_URL, reset_postgres
from helpers import give

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="CONSENT_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_app(app_config, postgres_database):
    """The app on the session's PostgreSQL database, emptied, with the campaign ``demo``."""
    url, engine = postgres_database
    reset_postgres(engine)
    app_config["DATABASE_URL"] = url
    application = create_app(app_config)
    with application.app_context():
        with db.transaction() as session:
            create_campaign(session, "demo", name="Marie 2027", controller="Marie 2027",
                            contact_email="dpo@marie2027.test",
                            policy_url="https://marie2027.test/privacy", origins=[],
                            locale="fr", networks=["facebook", "linkedin"])
    yield application
    with application.app_context():
        db.engine().dispose()


def column_type(app, table: str, column: str) -> str:
    with app.app_context():
        return db.session().scalar(text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"),
            {"t": table, "c": column})


def test_the_migration_creates_native_postgres_types(pg_app):
    assert column_type(pg_app, "consent_events", "occurred_at") == "timestamp with time zone"
    assert column_type(pg_app, "consent_events", "seq") == "bigint"
    assert column_type(pg_app, "campaigns", "networks") == "json"
    assert column_type(pg_app, "signups", "choices") == "json"


def test_the_chain_verifies_whatever_the_servers_time_zone(pg_app, app_config):
    give(pg_app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    # The same database read by a process whose session answers in Paris time.
    paris = make_url(app_config["DATABASE_URL"]).update_query_dict(
        {"options": "-c timezone=Europe/Paris"}).render_as_string(hide_password=False)
    other = create_app({**app_config, "DATABASE_URL": paris})
    with other.app_context():
        session = db.session()
        assert session.scalar(text("SHOW timezone")) == "Europe/Paris"
        occurred = session.scalars(select(ConsentEvent.occurred_at)).first()
        assert occurred.isoformat().endswith("+00:00")
        campaign_row = session.scalars(select(Campaign)).one()
        report = chain.verify_chain(session, campaign_row)
        assert report.ok, report.reason
        db.engine().dispose()
    give(other, "demo", "ben@example.test", networks=["linkedin"])
    with pg_app.app_context():
        session = db.session()
        assert chain.verify_chain(session, session.scalars(select(Campaign)).one()).ok


def test_a_nul_character_is_a_clear_400_not_a_database_error(pg_app):
    # SQLite stores a NUL; PostgreSQL refuses it with a DataError, which must not become a 500.
    response = pg_app.test_client().get("/w/demo%00")
    assert response.status_code == 400
