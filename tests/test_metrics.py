"""Prometheus metrics: requests by endpoint and status, check decisions, signups, confirmations and
withdrawals counted on commit only, the outbox read at scrape time, and several processes summed
in multiprocess mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from consent_widget import db, ledger, outbox, urls
from consent_widget.cli import main
from consent_widget.models import Campaign, OutboxMessage, Signup
from helpers import confirm, give, sign_up, withdraw

ROOT = Path(__file__).resolve().parent.parent


def value(name: str, **labels) -> float:
    """A sample of this process's counters, 0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(client) -> dict:
    """``/metrics`` parsed: ``{(name, frozenset(labels)): value}``."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def test_requests_are_counted_by_endpoint_and_status_never_by_path(client, campaign):
    before = value("consent_http_requests_total", endpoint="links.manage", method="GET",
                   status="404")
    client.get("/w/demo/manage/secret-looking-token")
    assert value("consent_http_requests_total", endpoint="links.manage", method="GET",
                 status="404") == before + 1
    assert client.get("/no/such/page-with-a-token").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="(no route)",method="GET",status="404"' in text
    assert "secret-looking-token" not in text and "page-with-a-token" not in text


def test_signups_confirmations_and_withdrawals_are_counted(app, campaign):
    signups, confirmations = value("consent_signups_total"), value("consent_confirmations_total")
    withdrawn = value("consent_withdrawals_total", purpose="social_matching")
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    assert value("consent_signups_total") == signups + 1
    confirm(app, signup)
    assert value("consent_confirmations_total") == confirmations + 1
    withdraw(app, "demo", "ana@example.test", "social_matching", "facebook")
    assert value("consent_withdrawals_total", purpose="social_matching") == withdrawn + 1


def test_a_rolled_back_signup_is_not_counted(app, campaign):
    signups = value("consent_signups_total")
    with app.app_context():
        with pytest.raises(RuntimeError):
            with db.transaction() as session:
                campaign_row = session.scalars(select(Campaign)).one()
                ledger.record_signup(session, campaign_row, "ana@example.test", [],
                                     key=b"k" * 32, locale="fr")
                session.flush()
                raise RuntimeError("the request failed after the signup was written")
    assert value("consent_signups_total") == signups


def test_a_rolled_back_confirmation_and_withdrawal_are_not_counted(app, campaign):
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)  # unticks facebook
    confirmations = value("consent_confirmations_total")
    withdrawn = value("consent_withdrawals_total", purpose="social_matching")
    with app.app_context():
        with pytest.raises(RuntimeError):
            with db.transaction() as session:
                row = session.scalars(select(Signup).where(Signup.public_id == signup)).one()
                ledger.confirm(session, session.get(Campaign, row.campaign_id), row)
                raise RuntimeError("the request failed after the confirmation was written")
    assert value("consent_confirmations_total") == confirmations
    assert value("consent_withdrawals_total", purpose="social_matching") == withdrawn
    confirm(app, signup)  # the same confirmation, committed this time: counted once
    assert value("consent_confirmations_total") == confirmations + 1
    assert value("consent_withdrawals_total", purpose="social_matching") == withdrawn + 1


def test_a_confirmation_from_its_page_is_counted_once(app, client, campaign):
    give(app, "demo", "ben@example.test", newsletter=True)  # a signing key exists: it is prepared
    signup = sign_up(app, "demo", "ana@example.test", newsletter=True)
    confirmations = value("consent_confirmations_total")
    with app.app_context():
        session = db.session()
        row = session.scalars(select(Signup).where(Signup.public_id == signup)).one()
        path = urllib.parse.urlsplit(urls.confirm_url(session.get(Campaign, row.campaign_id),
                                                      row)).path
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200  # already confirmed: nothing more
    assert value("consent_confirmations_total") == confirmations + 1


def test_a_session_closed_without_commit_counts_nothing_later(app, campaign):
    signups = value("consent_signups_total")
    with app.app_context():
        session = db.session()
        campaign_row = session.scalars(select(Campaign)).one()
        ledger.record_signup(session, campaign_row, "ana@example.test", [], key=b"k" * 32,
                             locale="fr")
        db.close_session()  # the request ended without committing
        with db.transaction() as session:  # the next transaction writes no signup
            session.scalars(select(Campaign)).one()
    assert value("consent_signups_total") == signups
    sign_up(app, "demo", "ben@example.test")
    assert value("consent_signups_total") == signups + 1


def test_check_decisions_are_counted_by_outcome(app, client, campaign):
    give(app, "demo", "ana@example.test", newsletter=True)
    credentials = json.loads(app.test_cli_runner().invoke(
        main, ["client", "create", "demo"]).stdout)
    token = client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": credentials["client_id"],
        "client_secret": credentials["client_secret"]}).json["access_token"]
    allowed = value("consent_check_decisions_total", allowed="true", status="given")
    unknown = value("consent_check_decisions_total", allowed="false", status="unknown")
    for email in ("ana@example.test", "nobody@example.test"):
        response = client.post("/api/v1/consents/check", json={
            "email": email, "purpose": "newsletter"}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    assert value("consent_check_decisions_total", allowed="true", status="given") == allowed + 1
    assert value("consent_check_decisions_total", allowed="false",
                 status="unknown") == unknown + 1


def test_the_outbox_depth_age_and_failures_are_read_at_scrape_time(app, client, campaign):
    empty = scraped(client)
    assert empty[("consent_outbox_messages", frozenset({("kind", "email"),
                                                        ("status", "pending")}))] == 0
    sign_up(app, "demo", "ana@example.test", newsletter=True)
    sign_up(app, "demo", "bruno@example.test", newsletter=True)
    with app.app_context(), db.transaction() as session:
        first, second = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "email").order_by(OutboxMessage.id)).all()[:2]
        session.execute(update(OutboxMessage).where(OutboxMessage.id == first.id).values(
            attempts=1, last_error="SMTPServerDisconnected: Connection unexpectedly closed"))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == second.id).values(
            status=outbox.DEAD, attempts=15, last_error="550 No such user"))
    metrics = scraped(client)
    email = ("kind", "email")
    assert metrics[("consent_outbox_messages", frozenset({email, ("status", "pending")}))] == 1
    assert metrics[("consent_outbox_messages", frozenset({email, ("status", "dead")}))] == 1
    assert metrics[("consent_outbox_retrying_messages", frozenset({email}))] == 1
    assert metrics[("consent_outbox_oldest_pending_age_seconds", frozenset({email}))] >= 0


MULTIPROCESS_CHILD = textwrap.dedent("""
    import sys
    from consent_widget import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATABASE_URL": sys.argv[1],
                      "MAIL_URL": sys.argv[2]})
    client = app.test_client()
    for _ in range(int(sys.argv[3])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[4] == "scrape":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
""")


def test_several_worker_processes_are_summed_in_multiprocess_mode(app, app_config, tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory))
    args = [app_config["DATABASE_URL"], app_config["MAIL_URL"]]

    def worker(requests: int, mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", MULTIPROCESS_CHILD, *args, str(requests),
                               mode], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    worker(3, "count")
    text = worker(4, "scrape")  # another process: its own 4 and the first one's 3
    samples = {(sample.name, sample.labels.get("endpoint"), sample.labels.get("status")):
               sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples[("consent_http_requests_total", "health.healthz", "200")] == 7
