"""The demo CRM of examples/platform, end to end over real HTTP and SMTP: a supporter signs up
in the widget and confirms, the CRM matches only once allowed and keeps the decision, the
supporter withdraws from the emailed link, and the webhook makes the CRM delete the match."""
from __future__ import annotations

import importlib.util
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from consent_widget import outbox
from consent_widget.client import ConsentClient
from conftest import run_json
from test_journey import form_fields, links_in, path_of

CRM_SOURCE = Path(__file__).resolve().parent.parent / "examples" / "platform" / "crm.py"


@pytest.fixture
def app_config(app_config, smtp_server):
    """The service sends its email to the SMTP server on loopback."""
    return {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}"}


def serve(wsgi_app):
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def crm(app, runner, campaign, tmp_path):
    """The service and the CRM, each on its own loopback port, wired as ``make run`` does."""
    spec = importlib.util.spec_from_file_location("demo_crm", CRM_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = serve(app)
    credentials = run_json(runner, "client", "create", "demo", "--name", "demo CRM")
    consent = ConsentClient(f"http://127.0.0.1:{service.server_port}",
                            credentials["client_id"], credentials["client_secret"])
    crm_app = module.create_crm(str(tmp_path / "crm.sqlite3"), consent, webhook_secret="")
    crm_server = serve(crm_app)
    endpoint = run_json(runner, "webhook", "add", "demo",
                        f"http://127.0.0.1:{crm_server.server_port}/webhooks/consent")
    crm_app.config["WEBHOOK_SECRET"] = endpoint["secret"]
    yield crm_app.test_client(), tmp_path / "crm.sqlite3", consent
    crm_server.shutdown()
    service.shutdown()


def matches(database):
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT network, subject_id, decision, profile FROM matches"
                                  ).fetchall()


def test_sign_up_confirm_match_withdraw_and_the_match_is_gone(app, client, crm, smtp_server):
    crm_client, database, consent = crm
    # A supporter signs up in the widget: newsletter and Facebook matching, not LinkedIn.
    page = client.get("/w/demo?lang=en")
    client.post("/w/demo", data={**form_fields(page.data), "email": "ana@example.test",
                                 "newsletter": "y", "social_matching": ["facebook"]})
    supporter = crm_client.post("/supporters", json={"email": "ana@example.test"}).json["id"]

    # Before confirmation, the CRM may not match.
    refused = crm_client.post(f"/supporters/{supporter}/match", data={"network": "facebook"})
    assert (refused.status_code, refused.json["status"]) == (409, "requested")
    assert matches(database) == []

    outbox.deliver_due(app)
    confirm_link = next(u for u in links_in(smtp_server.messages[0]) if "/confirm/" in u)
    assert client.post(path_of(confirm_link)).status_code == 200

    # Confirmed: Facebook matches, with the decision kept beside it; LinkedIn still may not.
    matched = crm_client.post(f"/supporters/{supporter}/match", data={"network": "facebook"})
    assert matched.status_code == 200 and matched.json["profile"]["fake"] is True
    assert crm_client.post(f"/supporters/{supporter}/match",
                           data={"network": "linkedin"}).status_code == 409
    [(network, subject_id, decision, _)] = matches(database)
    assert network == "facebook"
    assert consent.verify_decision(decision)["subject_id"] == subject_id

    # The consent.given webhook is acknowledged and changes nothing.
    outbox.deliver_due(app)
    assert len(matches(database)) == 1

    # The supporter withdraws Facebook from the manage link of the receipt email.
    receipt_email = next(m for m in smtp_server.messages if m["To"] == "ana@example.test"
                         and any("/manage/" in u for u in links_in(m)))
    manage_link = next(u for u in links_in(receipt_email) if "/manage/" in u)
    assert client.post(path_of(manage_link),
                       data={"withdraw": "social_matching:facebook"}).status_code == 200
    stats = outbox.deliver_due(app)
    assert stats["retried"] == stats["dead"] == 0

    # The CRM deleted the match on the webhook, and acknowledged each event once.
    assert matches(database) == []
    with sqlite3.connect(database) as connection:
        processed = connection.execute("SELECT type FROM processed_webhooks").fetchall()
    assert sorted(t for (t,) in processed) == ["consent.given", "consent.given",
                                               "consent.withdrawn"]
    # Matching again is refused now.
    again = crm_client.post(f"/supporters/{supporter}/match", data={"network": "facebook"})
    assert (again.status_code, again.json["status"]) == (409, "withdrawn")


def test_the_crm_refuses_unsigned_or_forged_webhooks(crm):
    crm_client, database, _ = crm
    body = json.dumps({"type": "consent.withdrawn", "timestamp": "2026-11-29T10:00:00+00:00",
                       "data": {"subject_id": "sub_x", "network": "facebook"}})
    forged = crm_client.post("/webhooks/consent", data=body, headers={
        "webhook-id": "evt_forged", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"})
    assert forged.status_code == 401
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM processed_webhooks").fetchone()[0] == 0
