"""Fixtures: an app on a fresh, migrated database per test, its client and CLI runner, and a
campaign. Module-specific fixtures (SMTP server, API token, ...) live beside them below."""
from __future__ import annotations

import json

import email_validator
import pytest

from consent_widget import create_app, db, migrate
from consent_widget.campaigns import create_campaign


# Test addresses use the reserved .test domain, which email-validator accepts only in its test mode.
email_validator.TEST_ENVIRONMENT = True


@pytest.fixture
def app_config(tmp_path):
    """Settings of the app under test; a test may change them before asking for ``app``."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "BASE_URL": "http://consent.test",
        "MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "MAIL_FROM": "Consent <no-reply@consent.test>",
    }


@pytest.fixture
def app(app_config):
    """The application on a migrated database."""
    application = create_app(app_config)
    with application.app_context():
        migrate.upgrade(db.engine())
    yield application
    with application.app_context():
        db.engine().dispose()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner of the app's ``consent-widget`` commands."""
    return app.test_cli_runner()


def run_json(runner, *args):
    """Run a CLI command that prints JSON; assert it succeeded and return the object."""
    from consent_widget.cli import main
    result = runner.invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def campaign(app):
    """A campaign ``demo`` offering the newsletter and facebook and linkedin matching."""
    with app.app_context():
        with db.transaction() as session:
            created = create_campaign(
                session, "demo", name="Marie 2027", controller="Association Marie 2027",
                contact_email="dpo@marie2027.test", policy_url="https://marie2027.test/privacy",
                origins=["https://marie2027.test"], locale="fr",
                networks=["facebook", "linkedin"])
        return created
