"""The commands the console's functions also serve: campaigns listed and updated, API clients
listed, revoked and given a new secret; tried through the real token endpoint and API."""
from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from consent_widget import db
from consent_widget.cli import main
from consent_widget.models import AuditEntry, Campaign, Notice, OAuthClient
from conftest import run_json


def basic(client_id, secret):
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token_answer(client, client_id, secret):
    return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers=basic(client_id, secret))


def check(client, token):
    return client.post("/api/v1/consents/check",
                       json={"email": "ana@example.test", "purpose": "newsletter"},
                       headers={"Authorization": f"Bearer {token}"})


def campaign_row(app, slug="demo") -> dict:
    """What is stored for a campaign, to assert that a refused update changed nothing."""
    with app.app_context():
        row = db.session().scalars(select(Campaign).where(Campaign.slug == slug)).one()
        return {column.name: getattr(row, column.name) for column in Campaign.__table__.columns}


def fails(runner, *args) -> str:
    """Run a command that must fail cleanly; return what it printed."""
    result = runner.invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.startswith("Error: ")
    return result.output


# --- campaigns -----------------------------------------------------------------------------
def test_campaign_list_shows_every_campaign(runner, campaign):
    run_json(runner, "campaign", "create", "other", "--name", "Other", "--controller", "C",
             "--contact-email", "dpo@other.test", "--policy-url", "https://other.test/p",
             "--locale", "en")
    listed = run_json(runner, "campaign", "list")
    assert [c["slug"] for c in listed] == ["demo", "other"]
    demo = listed[0]
    assert {key: demo[key] for key in ("name", "controller", "locale", "networks", "origins")} \
        == {"name": "Marie 2027", "controller": "Association Marie 2027", "locale": "fr",
            "networks": ["facebook", "linkedin"], "origins": ["https://marie2027.test"]}
    assert demo["created_at"].startswith("20")


def test_campaign_list_with_no_campaign_is_empty(runner):
    assert run_json(runner, "campaign", "list") == []


def test_campaign_update_changes_only_the_options_given(app, runner, campaign):
    before = campaign_row(app)
    out = run_json(runner, "campaign", "update", "demo", "--name", "Marie Présidente",
                   "--origin", "https://marie.test", "--origin", "https://www.marie.test/",
                   "--network", "meetup", "--validity-days", "365", "--accent", "#1F4FBF")
    after = campaign_row(app)
    assert after["name"] == out["name"] == "Marie Présidente"
    assert after["origins"] == out["origins"] == ["https://marie.test", "https://www.marie.test"]
    assert after["networks"] == ["meetup"] and after["validity_days"] == 365
    assert after["theme_accent"] == "#1f4fbf" and out["theme"]["accent"] == "#1f4fbf"
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {"name", "origins", "networks", "validity_days", "theme_accent"}
    assert out["widget_url"] == "http://consent.test/w/demo"
    with app.app_context():
        session = db.session()
        [entry] = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "campaign.update")).all()
        assert entry.detail["via"] == "command line"
        assert set(entry.detail["changed"]) == {"name", "origins", "networks", "validity_days",
                                                "theme"}
        # The new name and network are in the texts now shown: their versions are recorded.
        assert session.scalars(select(Notice).where(Notice.network == "meetup")).first()


def test_campaign_update_with_nothing_given_changes_nothing(app, runner, campaign):
    before = campaign_row(app)
    out = run_json(runner, "campaign", "update", "demo")
    assert out["slug"] == "demo" and campaign_row(app) == before


def test_the_look_is_checked_as_a_whole(app, runner, campaign):
    run_json(runner, "campaign", "update", "demo", "--accent", "#1f4fbf")
    # Dark blue reads on white, not on the dark background: changing only the scheme is refused.
    before = campaign_row(app)
    message = fails(runner, "campaign", "update", "demo", "--scheme", "dark")
    assert "contrast" in message and campaign_row(app) == before
    out = run_json(runner, "campaign", "update", "demo", "--scheme", "dark", "--accent", "#8ab4ff",
                   "--radius", "0", "--font", "serif")
    assert out["theme"] == {"accent": "#8ab4ff", "font": "serif", "radius": 0, "scheme": "dark"}
    assert run_json(runner, "campaign", "update", "demo", "--accent", "")["theme"]["accent"] \
        is None


@pytest.mark.parametrize("args, said", [
    (["--origin", "javascript:alert(1)"], "origin"),
    (["--origin", "https://marie.test/path"], "origin only"),
    (["--network", "myspace"], "unknown network"),
    (["--contact-email", "nope"], "contact email"),
    (["--policy-url", "ftp://x.test/p"], "policy url"),
    (["--validity-days", "0"], "validity"),
    (["--name", "  "], "required"),
    (["--accent", "red"], "#rrggbb"),
    (["--accent", "#ffff00"], "contrast"),
    (["--radius", "40"], "radius"),
    (["--name", "New", "--accent", "#eeeeee"], "contrast"),
])
def test_campaign_update_refuses_bad_values_and_changes_nothing(app, runner, campaign, args,
                                                                said):
    before = campaign_row(app)
    assert said in fails(runner, "campaign", "update", "demo", *args).lower()
    assert campaign_row(app) == before
    with app.app_context():
        assert db.session().scalars(select(AuditEntry)).all() == []


def test_campaign_update_of_an_unknown_campaign_fails(runner, campaign):
    assert "no campaign 'nope'" in fails(runner, "campaign", "update", "nope", "--name", "X")


# --- API clients ---------------------------------------------------------------------------
@pytest.fixture
def platform(runner, campaign):
    """An API client of the demo campaign, with its secret."""
    return run_json(runner, "client", "create", "demo", "--name", "CRM")


def test_client_list_shows_no_secret(runner, platform):
    second = run_json(runner, "client", "create", "demo", "--name", "Mailer")
    listed = run_json(runner, "client", "list", "demo")
    assert listed["campaign"] == "demo"
    assert {c["client_id"] for c in listed["clients"]} == {platform["client_id"],
                                                           second["client_id"]}
    for shown in listed["clients"]:
        assert set(shown) == {"client_id", "name", "scopes", "created_at", "revoked_at"}
        assert shown["revoked_at"] is None and "consents:check" in shown["scopes"]
    output = runner.invoke(main, ["client", "list", "demo"]).output
    assert platform["client_secret"] not in output and second["client_secret"] not in output


def test_a_revoked_clients_token_is_refused_at_once(app, client, runner, platform):
    answer = token_answer(client, platform["client_id"], platform["client_secret"])
    token = answer.json["access_token"]
    assert check(client, token).status_code == 200

    revoked = run_json(runner, "client", "revoke", platform["client_id"])
    assert revoked["revoked_at"] is not None and revoked["campaign"] == "demo"
    refused = check(client, token)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_token"
    assert "Bearer" in refused.headers["WWW-Authenticate"]
    # Nor can it get another token.
    assert token_answer(client, platform["client_id"],
                        platform["client_secret"]).json["error"] == "invalid_client"
    listed = run_json(runner, "client", "list", "demo")["clients"]
    assert listed[0]["revoked_at"] == revoked["revoked_at"]
    # Revoking again keeps the first time.
    assert run_json(runner, "client", "revoke", platform["client_id"])["revoked_at"] == \
        revoked["revoked_at"]


def test_a_rotated_secret_replaces_the_old_one_at_once(app, client, runner, platform):
    old_token = token_answer(client, platform["client_id"],
                             platform["client_secret"]).json["access_token"]
    rotated = run_json(runner, "client", "rotate", platform["client_id"])
    new_secret = rotated["client_secret"]
    assert new_secret and new_secret != platform["client_secret"]

    refused = token_answer(client, platform["client_id"], platform["client_secret"])
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    # The tokens the old secret obtained end with it, as after a leak they must.
    assert check(client, old_token).status_code == 401
    answer = token_answer(client, platform["client_id"], new_secret)
    assert answer.status_code == 200
    assert check(client, answer.json["access_token"]).status_code == 200
    # Printed once, stored only hashed.
    with app.app_context():
        row = db.session().scalars(select(OAuthClient)).one()
        assert new_secret not in row.secret_hash
    listed = runner.invoke(main, ["client", "list", "demo"]).output
    assert new_secret not in listed


def test_client_commands_are_audited(app, runner, platform):
    run_json(runner, "client", "rotate", platform["client_id"])
    run_json(runner, "client", "revoke", platform["client_id"])
    with app.app_context():
        entries = db.session().scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.action, e.target, e.detail["via"]) for e in entries] == [
            ("client.rotate", platform["client_id"], "command line"),
            ("client.revoke", platform["client_id"], "command line")]


def test_a_revoked_client_gets_no_new_secret(app, client, runner, platform):
    run_json(runner, "client", "revoke", platform["client_id"])
    with app.app_context():
        before = db.session().scalars(select(OAuthClient.secret_hash)).one()
    assert "is revoked" in fails(runner, "client", "rotate", platform["client_id"])
    with app.app_context():
        assert db.session().scalars(select(OAuthClient.secret_hash)).one() == before


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_unknown_client_ids_fail_clearly(runner, platform, command):
    assert "no API client 'cw_nope'" in fails(runner, "client", command, "cw_nope")
    assert "no API client" in fails(runner, "client", command, "x" * 500)


def test_client_list_of_an_unknown_campaign_fails(runner):
    assert "no campaign 'nope'" in fails(runner, "client", "list", "nope")
