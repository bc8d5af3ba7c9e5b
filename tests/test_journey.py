"""The whole journey as people and programs live it: a supporter signs up in the widget, the
confirmation arrives by real SMTP, the link from that email confirms, a platform checks with an
OAuth token, the supporter withdraws from the link in the receipt email, the platform is told no.
"""
from __future__ import annotations

import base64
import re

import jwt
import pytest

from consent_widget import outbox
from conftest import run_json


@pytest.fixture
def app_config(app_config, smtp_server):
    """The app under test sends its email to the SMTP server on loopback."""
    return {**app_config, "MAIL_URL": f"smtp://127.0.0.1:{smtp_server.port}"}


def links_in(message) -> list[str]:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.findall(r"http://consent\.test/\S+", body)


def path_of(url: str) -> str:
    return url.removeprefix("http://consent.test")


def deliver(app):
    with app.app_context():
        return outbox.deliver_due(app)


def form_fields(page: bytes) -> dict:
    """The hidden fields of the widget form (CSRF token and friends), as a browser would send."""
    fields = {}
    for tag in re.findall(rb"<input[^>]*>", page):
        name = re.search(rb'name="([^"]+)"', tag)
        value = re.search(rb'value="([^"]*)"', tag)
        if name and b'type="hidden"' in tag:
            fields[name.group(1).decode()] = value.group(1).decode() if value else ""
    return fields


def test_sign_up_confirm_check_withdraw(app, client, runner, campaign, smtp_server):
    # A supporter signs up in the widget, ticking the newsletter and Facebook matching.
    page = client.get("/w/demo?lang=en")
    assert page.status_code == 200
    data = {**form_fields(page.data), "email": "ana@example.test", "newsletter": "y",
            "social_matching": ["facebook"]}
    response = client.post("/w/demo", data=data)
    assert response.status_code == 200, response.data

    # The confirmation email arrives over SMTP; GET on its link changes nothing.
    deliver(app)
    assert len(smtp_server.messages) == 1
    confirmation = smtp_server.messages[0]
    assert confirmation["To"] == "ana@example.test"
    confirm_link = next(u for u in links_in(confirmation) if "/confirm/" in u)

    platform = run_json(runner, "client", "create", "demo")
    basic = base64.b64encode(f"{platform['client_id']}:{platform['client_secret']}".encode()).decode()
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": "Basic " + basic}).json["access_token"]

    def check():
        return client.post("/api/v1/consents/check",
                           json={"email": "ana@example.test", "purpose": "social_matching",
                                 "network": "facebook"},
                           headers={"Authorization": f"Bearer {token}"}).json

    assert client.get(path_of(confirm_link)).status_code == 200
    assert check()["status"] == "requested"

    # POST confirms; the platform is now allowed, and the receipt verifies against the JWKS.
    assert client.post(path_of(confirm_link)).status_code == 200
    answer = check()
    assert answer["allowed"] is True and answer["status"] == "given"
    receipt = client.get(f"/api/v1/receipts/{answer['receipt_id']}",
                         headers={"Authorization": f"Bearer {token}"}).json["jws"]
    keys = {k["kid"]: jwt.PyJWK(k) for k in client.get("/.well-known/jwks.json").json["keys"]}
    claims = jwt.decode(receipt, keys[jwt.get_unverified_header(receipt)["kid"]],
                        algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["consentReceiptID"] == answer["receipt_id"]
    assert claims["piiPrincipalId"] == answer["subject_id"]

    # The receipt email carries the manage link; withdrawing Facebook there is effective at once.
    deliver(app)
    assert len(smtp_server.messages) == 2
    receipt_email = smtp_server.messages[1]
    assert receipt_email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [attachment] = list(receipt_email.iter_attachments())
    assert attachment.get_content_type() == "application/jwt"
    assert attachment.get_content().decode() == receipt  # the very receipt the API returns
    manage_link = next(u for u in links_in(receipt_email) if "/manage/" in u)
    assert client.post(path_of(manage_link),
                       data={"withdraw": "social_matching:facebook"}).status_code == 200
    answer = check()
    assert answer["allowed"] is False and answer["status"] == "withdrawn"

    # Every email was delivered exactly once.
    deliver(app)
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 3
    assert run_json(runner, "ledger", "verify", "demo")["ok"] is True
