"""The ``consent-widget`` commands: JSON out, clear errors, ledger verification."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from consent_widget import db
from consent_widget.cli import main
from consent_widget.models import ConsentEvent
from conftest import run_json
from helpers import give


def test_campaign_create_prints_the_widget_url_and_snippet(runner):
    out = run_json(runner, "campaign", "create", "marie", "--name", "Marie 2027",
                   "--controller", "Association Marie 2027", "--contact-email", "dpo@marie.test",
                   "--policy-url", "https://marie.test/privacy", "--origin", "https://marie.test",
                   "--origin", "https://www.marie.test/", "--locale", "en",
                   "--network", "facebook", "--network", "meetup")
    assert out["slug"] == "marie"
    assert out["widget_url"] == "http://consent.test/w/marie"
    assert out["embed_snippet"] == ('<script src="http://consent.test/embed.js" '
                                    'data-campaign="marie" async></script>')
    assert out["origins"] == ["https://marie.test", "https://www.marie.test"]
    assert out["networks"] == ["facebook", "meetup"]


@pytest.mark.parametrize("args, message", [
    (["Bad Slug"], "slug"),
    (["ok", "--network", "myspace"], "network"),
    (["ok", "--origin", "javascript:alert(1)"], "origin"),
    (["ok", "--origin", "https://x.test/path"], "origin"),
    (["ok", "--contact-email", "nope"], "contact email"),
])
def test_campaign_create_rejects_bad_input_clearly(runner, args, message):
    base = {"--name": "N", "--controller": "C", "--contact-email": "dpo@x.test",
            "--policy-url": "https://x.test/p"}
    argv = ["campaign", "create", args[0]]
    extra = args[1:]
    for flag, value in base.items():
        if flag not in extra:
            argv += [flag, value]
    result = runner.invoke(main, argv + extra)
    assert result.exit_code != 0
    assert message in result.output.lower()


def test_campaign_slugs_are_unique(runner, campaign):
    result = runner.invoke(main, ["campaign", "create", "demo", "--name", "N", "--controller", "C",
                                  "--contact-email", "a@x.test", "--policy-url", "https://x.test"])
    assert result.exit_code != 0 and "exists" in result.output


def test_client_create_for_an_unknown_campaign_fails(runner):
    result = runner.invoke(main, ["client", "create", "nope"])
    assert result.exit_code != 0 and "no campaign" in result.output


def test_ledger_verify_passes_then_fails_on_a_tampered_row(app, runner, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    out = run_json(runner, "ledger", "verify", "demo")
    assert out["ok"] is True and out["events"] == 5 and len(out["head"]) == 64
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ConsentEvent).where(ConsentEvent.seq == 2)
                            .values(network="linkedin"))
    result = runner.invoke(main, ["ledger", "verify", "demo"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["broken_event"]["seq"] == 2


def test_ledger_verify_of_every_campaign(app, runner, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    out = run_json(runner, "ledger", "verify")
    assert out["ok"] is True and out["events"] == 4 and set(out["heads"]) == {"demo"}


def test_db_current_is_at_head_after_upgrade(runner, app):
    out = run_json(runner, "db", "current")
    assert out["current"] == out["head"]
