"""The SDK against the real app served on a loopback port: tokens, checks, batches, the feed,
offline verification, webhooks, retries and clear errors."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server

from consent_widget import db, webhooks
from consent_widget.client import (ApiError, AuthenticationError, ConsentClient,
                                   ServiceUnavailable, VerificationError)
from consent_widget.models import OAuthToken, utcnow
from conftest import run_json
from helpers import give


class Flaky:
    """WSGI middleware that answers the next ``failures`` requests with ``status`` itself."""

    def __init__(self, app):
        self.app, self.failures, self.status, self.seen = app, 0, 503, 0

    def __call__(self, environ, start_response):
        self.seen += 1
        if self.failures > 0:
            self.failures -= 1
            start_response(f"{self.status} Unavailable", [("Content-Type", "application/json"),
                                                          ("Retry-After", "0")])
            return [b'{"error": "unavailable", "message": "try later"}']
        return self.app(environ, start_response)


@pytest.fixture
def served(app):
    """The app on a loopback port behind :class:`Flaky`; yields (base_url, flaky)."""
    flaky = Flaky(app)
    server = make_server("127.0.0.1", 0, flaky, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", flaky
    server.shutdown()


@pytest.fixture
def credentials(runner, campaign):
    """A client of the demo campaign."""
    return run_json(runner, "client", "create", "demo")


@pytest.fixture
def consent(served, credentials):
    """The SDK, configured for quick retries."""
    return ConsentClient(served[0], credentials["client_id"], credentials["client_secret"],
                         backoff=0.01)


def tokens_issued(app):
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(OAuthToken))


def test_check_is_typed_verified_and_reuses_its_token(app, consent):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    answer = consent.check("social_matching", "facebook", email="ana@example.test")
    assert (answer.allowed, answer.status, answer.network) == (True, "given", "facebook")
    assert isinstance(answer.given_at, datetime) and answer.receipt_id
    assert answer.claims["aud"] == consent.client_id
    stranger = consent.check("newsletter", email="nobody@example.test")
    assert (stranger.allowed, stranger.status, stranger.subject_id) == (False, "unknown", None)
    by_id = consent.check("social_matching", "facebook", subject_id=answer.subject_id)
    assert by_id.allowed
    assert tokens_issued(app) == 1


def test_a_revoked_token_is_replaced_once(app, consent):
    consent.check("newsletter", email="a@example.test")
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(OAuthToken).values(revoked_at=utcnow()))
    consent.check("newsletter", email="a@example.test")
    assert tokens_issued(app) == 2


def test_wrong_credentials_and_bad_questions_raise_clear_errors(served, consent, credentials):
    wrong = ConsentClient(served[0], credentials["client_id"], "not-the-secret")
    with pytest.raises(AuthenticationError) as refused:
        wrong.check("newsletter", email="a@example.test")
    assert refused.value.code == "invalid_client"
    with pytest.raises(ApiError) as bad:
        consent.check("newsletter", email="not an address")
    assert (bad.value.status, bad.value.code) == (400, "invalid_email")


def test_retries_429_and_5xx_then_gives_up(served, consent):
    _, flaky = served
    flaky.failures, flaky.status = 2, 503
    assert consent.check("newsletter", email="a@example.test").status == "unknown"
    flaky.failures, flaky.status = 1, 429
    assert consent.check("newsletter", email="a@example.test").status == "unknown"
    flaky.failures = 10
    before = flaky.seen
    with pytest.raises(ServiceUnavailable):
        consent.check("newsletter", email="a@example.test")
    assert flaky.seen - before == consent.retries + 1


def test_nothing_listening_is_service_unavailable(credentials):
    lost = ConsentClient("http://127.0.0.1:9", "id", "secret", retries=1, backoff=0.01)
    with pytest.raises(ServiceUnavailable):
        lost.check("newsletter", email="a@example.test")


def test_batch_and_purge_audit_are_verified_against_the_request(app, consent):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    give(app, "demo", "bob@example.test", networks=["linkedin"])
    emails = ["bob@example.test", "ana@example.test", "nobody@example.test"]
    batch = consent.check_batch("social_matching", "facebook", emails=emails)
    assert [r.status for r in batch.results] == ["refused", "given", "unknown"]
    assert batch.claims["count"] == 3 and json.loads(batch.request)["emails"] == emails
    audit = consent.purge_audit("facebook", emails=emails)
    assert [(e["index"], e["email"]) for e in audit.purge] == [(0, "bob@example.test"),
                                                               (2, "nobody@example.test")]
    assert audit.claims["purge_count"] == 2


def test_events_iterate_over_every_page(app, consent):
    for i in range(5):
        give(app, "demo", f"p{i}@example.test", networks=["facebook"])
    seen = list(consent.events(limit=2))
    assert [e.data["email"] for e in seen] == [f"p{i}@example.test" for i in range(5)]
    assert {e.type for e in seen} == {"consent.given"}
    assert list(consent.events(after=seen[2].cursor)) == seen[3:]


def test_receipts_verify_offline_and_forgeries_do_not(app, consent):
    receipt_id = give(app, "demo", "ana@example.test", networks=["facebook"])
    claims = consent.receipt(receipt_id)
    assert claims["consentReceiptID"] == receipt_id
    decision = consent.check("social_matching", "facebook", email="ana@example.test").decision
    header, payload, signature = decision.split(".")
    # Another kind of token where a decision is expected, and the other way round.
    with app.app_context():
        from consent_widget.models import Receipt
        receipt_jws = db.session().get(Receipt, receipt_id).jws
    with pytest.raises(VerificationError):
        consent.verify_decision(receipt_jws)
    with pytest.raises(VerificationError):
        consent.verify_receipt(decision)
    # A payload changed to say "allowed" for someone else.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["subject_id"] = "sub_someone_else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(VerificationError):
        consent.verify_decision(f"{header}.{forged}.{signature}")
    # alg "none", and a header pointing at a key elsewhere.
    for bad_header in ({"alg": "none", "typ": "consent-decision+jwt"},
                       {"alg": "EdDSA", "typ": "consent-decision+jwt", "kid": "x",
                        "jku": "https://evil.test/jwks"}):
        encoded = base64.urlsafe_b64encode(json.dumps(bad_header).encode()).rstrip(b"=")
        with pytest.raises(VerificationError):
            consent.verify_decision(f"{encoded.decode()}.{payload}.")
    with pytest.raises(VerificationError):
        consent.verify_decision(decision, now=time.time() + 301)
    with pytest.raises(VerificationError):
        consent.verify_decision("not a token")


def test_a_decision_for_another_client_is_refused(served, runner, consent):
    other = run_json(runner, "client", "create", "demo")
    theirs = ConsentClient(served[0], other["client_id"], other["client_secret"])
    decision = theirs.check("newsletter", email="a@example.test").decision
    with pytest.raises(VerificationError, match="another client"):
        consent.verify_decision(decision)


def test_verify_webhook_accepts_standard_webhooks_and_refuses_tampering():
    secret = webhooks.new_secret()
    body = {"type": "consent.withdrawn", "timestamp": "2026-11-29T10:00:00+00:00",
            "data": {"campaign": "demo", "subject_id": "sub_1", "email": None,
                     "purpose": "social_matching", "network": "facebook",
                     "status": "withdrawn", "receipt_id": "r"}}
    payload = json.dumps(body).encode()
    now = datetime.now(timezone.utc)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(secret).sign("evt_1", now, payload.decode())}
    event = ConsentClient.verify_webhook(payload, headers, secret)
    assert (event.id, event.type, event.data["network"]) == ("evt_1", "consent.withdrawn",
                                                             "facebook")
    with pytest.raises(VerificationError):
        ConsentClient.verify_webhook(payload.replace(b"facebook", b"linkedin"), headers, secret)
    with pytest.raises(VerificationError):
        ConsentClient.verify_webhook(payload, headers, webhooks.new_secret())
    with pytest.raises(VerificationError):  # a replay, an hour later
        ConsentClient.verify_webhook(payload, headers, secret, now=now.timestamp() + 3600)


def test_the_sdk_imports_without_flask_or_sqlalchemy():
    code = ("import sys; sys.modules['flask'] = None; sys.modules['sqlalchemy'] = None; "
            "from consent_widget.client import ConsentClient; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("asked", [
    {"purpose": "social_matching", "network": "linkedin", "email": "ana@example.test"},
    {"purpose": "social_matching", "network": "facebook", "email": "ben@example.test"},
])
def test_a_genuine_decision_about_another_question_is_refused(app, consent, monkeypatch, asked):
    # Both people refused or are unknown: same "allowed" and "status", only the question differs.
    real = consent._api("POST", "/api/v1/consents/check", json.dumps(
        {"purpose": "social_matching", "network": "facebook",
         "email": "ana@example.test"}).encode())
    monkeypatch.setattr(consent, "_api", lambda *args, **kwargs: dict(real))
    with pytest.raises(VerificationError, match="another question"):
        consent.check(asked["purpose"], asked["network"], email=asked["email"])
    assert consent.check("social_matching", "facebook", email=" Ana@Example.test ").status
