"""``demo setup`` and ``demo serve`` as ``make run`` calls them: the demo campaign gets an owner
whose login the banner prints, and that login opens the console."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from consent_widget import accounts, db, demo
from consent_widget.models import AdminUser, AuditEntry, Membership
from conftest import run_json

from console import sign_in


@pytest.fixture
def app_config(app_config):
    """The service on loopback, as ``make run`` serves it."""
    return {**app_config, "BASE_URL": "http://127.0.0.1:5000"}


@pytest.fixture
def instance(app, tmp_path):
    """The demo's files in a folder of the test's own, not the checkout's ``instance/``."""
    app.instance_path = str(tmp_path / "instance")
    return app.instance_path


def _console_line(app) -> str:
    with app.app_context():
        text = demo.banner(app, 5001)
    [line] = [line for line in text.splitlines() if line.strip().startswith("Console:")]
    return line


def test_demo_setup_makes_an_owner_whose_printed_login_opens_the_console(app, runner, instance):
    printed = run_json(runner, "demo", "setup")
    assert printed["console"] == {"login_url": "http://127.0.0.1:5000/admin/login",
                                  "email": demo.DEMO_OWNER, "password": demo.DEMO_PASSWORD}
    line = _console_line(app)
    match = re.fullmatch(r"\s*Console:\s+(http://127\.0\.0\.1:5000/admin/login) — demo owner: "
                         r"(\S+) / (\S+)", line)
    assert match, line
    url, email, password = match.groups()
    client = app.test_client()
    assert client.get(url.removeprefix("http://127.0.0.1:5000")).status_code == 200
    assert sign_in(client, email, password).status_code == 302
    assert client.get("/admin/").headers["Location"].endswith("/admin/c/demo/")
    assert client.get("/admin/c/demo/embed").status_code == 200
    with app.app_context():
        assert db.session().scalars(select(AuditEntry.action).order_by(AuditEntry.id)
                                    ).all() == ["account.create", "login"]


def test_demo_setup_twice_keeps_one_owner_and_their_password(app, runner, instance):
    first = run_json(runner, "demo", "setup")
    second = run_json(runner, "demo", "setup")
    assert second["console"] == first["console"]
    assert second["client_id"] == first["client_id"]
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AdminUser)) == 1
        assert session.scalar(select(func.count()).select_from(Membership)) == 1


def test_a_password_changed_since_is_kept_and_no_longer_printed(app, runner, instance):
    run_json(runner, "demo", "setup")
    with app.app_context(), db.transaction() as session:
        user = accounts.user_by_email(session, demo.DEMO_OWNER)
        accounts.set_password(user, "the owner's own passphrase", 12)
    again = run_json(runner, "demo", "setup")
    assert again["console"]["password"] is None
    assert _console_line(app).endswith(f"demo owner: {demo.DEMO_OWNER} (password changed)")
    assert sign_in(app.test_client(), demo.DEMO_OWNER, demo.DEMO_PASSWORD).status_code == 401


def test_no_demo_owner_with_a_known_password_off_loopback(app, runner, instance):
    app.config["BASE_URL"] = "https://consent.example.org"
    printed = run_json(runner, "demo", "setup")
    assert printed["console"] == {"login_url": "https://consent.example.org/admin/login",
                                  "email": None, "password": None}
    with app.app_context():
        assert accounts.user_by_email(db.session(), demo.DEMO_OWNER) is None
    assert "consent-widget admin create EMAIL --operator" in _console_line(app)
