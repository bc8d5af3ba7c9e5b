"""Fixtures: an app on a fresh, migrated database per test, its client and CLI runner, and a
campaign. Module-specific fixtures (SMTP server, API token, ...) live beside them below."""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import email_validator
import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from consent_widget import create_app, db, migrate
from consent_widget.campaigns import create_campaign
from consent_widget.models import Base

CATALOGUES = Path(__file__).resolve().parent.parent / "consent_widget" / "translations"

#: The databases every test that uses ``app`` runs on: SQLite always, PostgreSQL too when
#: ``CONSENT_TEST_POSTGRES_URL`` names a server (``.ci/run`` sets it).
POSTGRES_URL = os.environ.get("CONSENT_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
#: The newest migration, read once: reading the scripts costs more than a test's reset.
HEAD = migrate.head()


# Test addresses use the reserved .test domain, which email-validator accepts only in its test mode.
email_validator.TEST_ENVIRONMENT = True


@pytest.fixture(scope="session")
def compiled_catalogues(tmp_path_factory):
    """The project's .po catalogues compiled as ``make translations`` does, into a temp folder,
    so a bare ``pytest`` tests the current translations and not whatever was compiled last."""
    target = tmp_path_factory.mktemp("translations")
    for po_path in CATALOGUES.glob("*/LC_MESSAGES/messages.po"):
        locale = po_path.parent.parent.name
        with po_path.open("rb") as source:
            catalogue = read_po(source, locale=locale)
        mo_path = target / locale / "LC_MESSAGES" / "messages.mo"
        mo_path.parent.mkdir(parents=True)
        with mo_path.open("wb") as out:
            write_mo(out, catalogue, use_fuzzy=True)
    return target


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """An SQLite file migrated once by Alembic; each test starts from a copy of it."""
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def app_config(tmp_path, compiled_catalogues):
    """Settings of the app under test; a test may change them before asking for ``app``."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite3'}",
        "BASE_URL": "http://consent.test",
        "MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "MAIL_FROM": "Consent <no-reply@consent.test>",
        "BABEL_TRANSLATION_DIRECTORIES": str(compiled_catalogues),
        # The webhook tests' receivers listen on loopback; tests/test_destinations.py turns
        # the protection back on.
        "WEBHOOK_ALLOW_PRIVATE": True,
    }


@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database of this session's own, migrated once by Alembic and dropped at the
    end: ``(url, engine)``. Its own database, so that two runs of the suite on one server (two
    developers, or CI beside a developer) never see each other's rows."""
    server = make_url(POSTGRES_URL)
    name = f"consent_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    migrate.upgrade(engine)
    yield url, engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def reset_postgres(engine) -> None:
    """Empty every table and restart its ids: the state of a fresh migration.

    DELETE, children first, rather than TRUNCATE: on tables of a few rows it takes a few
    milliseconds where TRUNCATE, which swaps every table's files, takes half a second. A test
    that migrated down (``test_migrations``) and failed half-way is repaired first."""
    if migrate.current(engine) != HEAD:
        migrate.upgrade(engine)
    with engine.begin() as connection:
        # The audit log refuses deletes by a trigger; a test database is reset below it.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        # The migration's one row of the token revocation counter, which triggers bump.
        connection.execute(text("INSERT INTO oauth_revocations (id, counter) VALUES (1, 0)"))
        connection.execute(text(
            "SELECT setval(c.oid, 1, false) FROM pg_class c "
            "WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace"))


@pytest.fixture(params=BACKENDS)
def app(request, app_config, migrated_sqlite):
    """The application on a freshly migrated database: SQLite, then PostgreSQL when configured."""
    if request.param == "postgresql":
        url, engine = request.getfixturevalue("postgres_database")
        reset_postgres(engine)
        app_config["DATABASE_URL"] = url
    else:
        url = app_config["DATABASE_URL"]
        shutil.copyfile(migrated_sqlite, url.removeprefix("sqlite:///"))
    application = create_app(app_config)
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


# --- SMTP server (mail and outbox tests) ------------------------------------------------------

class SMTPTestServer:
    """A real SMTP server (aiosmtpd) on loopback that records what it receives.

    ``stop()`` then ``start()`` brings it down and up again on the same port, as an outage of
    the relay would. ``options`` go to aiosmtpd's ``Controller`` (``tls_context``,
    ``ssl_context``, ``require_starttls``, ...); ``users`` (login → password) turns AUTH on and
    requires it. Addresses in ``refused`` get a permanent ``550`` at RCPT. ``messages`` holds
    the parsed emails in order of arrival, ``envelopes`` their SMTP envelopes at the same index.
    """

    def __init__(self, users: dict[str, str] | None = None, **options):
        import socket
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.host = "127.0.0.1"
        self.users = users
        self.options = options
        self.messages = []  # email.message.EmailMessage
        self.envelopes = []  # SMTPTestServer.Envelope
        self.logins = []  # (login, accepted)
        self.refused = set()
        self._controller = None

    @property
    def url(self) -> str:
        """A ``MAIL_URL`` for this server, without credentials or TLS options."""
        return f"smtp://{self.host}:{self.port}"

    def message_ids(self) -> list[str]:
        """The ``Message-ID`` of every message received, duplicates included."""
        return [message["Message-ID"] for message in self.messages]

    def start(self) -> None:
        """Listen on the port (again)."""
        from aiosmtpd.controller import Controller
        options = dict(self.options)
        if self.users is not None:
            options.update(authenticator=self._authenticate, auth_required=True,
                           auth_require_tls=False)
        self._controller = Controller(_RecordingHandler(self), hostname=self.host,
                                      port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start()``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult
        login = auth_data.login.decode("utf-8")
        accepted = self.users.get(login) == auth_data.password.decode("utf-8")
        self.logins.append((login, accepted))
        return AuthResult(success=accepted, handled=False)

    class Envelope:
        """The SMTP envelope of a received message, and its bytes as they arrived."""

        def __init__(self, envelope):
            self.mail_from = envelope.mail_from
            self.rcpt_tos = list(envelope.rcpt_tos)
            self.raw = envelope.original_content


class _RecordingHandler:
    def __init__(self, server: SMTPTestServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.server.refused:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy
        self.server.envelopes.append(SMTPTestServer.Envelope(envelope))
        self.server.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server_factory():
    """Start SMTP test servers with given options; every one is stopped after the test."""
    servers = []

    def start(**options) -> SMTPTestServer:
        server = SMTPTestServer(**options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory) -> SMTPTestServer:
    """A plain SMTP server on loopback, running; see :class:`SMTPTestServer`."""
    return smtp_server_factory()
