"""The platform API: OAuth client credentials, and the consent check with its signed decision."""
from __future__ import annotations

import base64
import io
import json
import sqlite3
import threading
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url

from consent_widget import db
from consent_widget.models import OAuthToken, utcnow
from conftest import run_json
from helpers import counts, give, sign_up


def basic(client_id, secret):
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def platform(runner, campaign):
    """Credentials of an API client of the ``demo`` campaign."""
    return run_json(runner, "client", "create", "demo", "--name", "CRM")


@pytest.fixture
def token(client, platform):
    """A bearer token of the demo campaign's client, fetched with HTTP Basic."""
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=basic(platform["client_id"], platform["client_secret"]))
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def check(client, token, **body):
    return client.post("/api/v1/consents/check", json=body,
                       headers={"Authorization": f"Bearer {token}"})


def jwks_keys(client):
    return {k["kid"]: jwt.PyJWK(k) for k in client.get("/.well-known/jwks.json").json["keys"]}


def decode_decision(client, token_jws, audience):
    header = jwt.get_unverified_header(token_jws)
    key = jwks_keys(client)[header["kid"]]
    return header, jwt.decode(token_jws, key, algorithms=["EdDSA"], audience=audience)


def test_token_with_http_basic_is_a_bearer_token_with_the_clients_scopes(client, platform):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=basic(platform["client_id"], platform["client_secret"]))
    assert response.status_code == 200
    body = response.json
    assert body["token_type"].lower() == "bearer"
    assert set(body["scope"].split()) == set(platform["scopes"])
    assert 0 < body["expires_in"] <= 3600
    assert "refresh_token" not in body


def test_token_with_client_secret_post(client, platform):
    response = client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": platform["client_id"],
        "client_secret": platform["client_secret"]})
    assert response.status_code == 200


@pytest.mark.parametrize("secret", ["wrong", "", "x" * 5000])
def test_token_with_a_wrong_secret_is_refused_in_rfc6749_shape(client, platform, secret):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=basic(platform["client_id"], secret))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


@pytest.mark.parametrize("data", [{"grant_type": "password"}, {"grant_type": "authorization_code"},
                                  {}])
def test_other_grants_are_refused(client, platform, data):
    response = client.post("/oauth/token", data=data,
                           headers=basic(platform["client_id"], platform["client_secret"]))
    assert response.status_code == 400
    assert response.json["error"] in ("unsupported_grant_type", "invalid_request")


def test_unknown_client_is_refused(client, campaign):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=basic("cw_nobody", "secret"))
    assert response.status_code == 401


def test_the_client_secret_is_stored_hashed(app, platform):
    with app.app_context():
        from consent_widget.models import OAuthClient
        row = db.session().query(OAuthClient).one()
    assert platform["client_secret"] not in row.secret_hash


def test_check_of_a_confirmed_consent_is_allowed_with_a_signed_decision(app, client, token,
                                                                       platform):
    receipt_id = give(app, "demo", "ana@example.test", networks=["facebook"])
    response = check(client, token, email="Ana@Example.test", purpose="social_matching",
                     network="facebook")
    assert response.status_code == 200
    body = response.json
    assert body["allowed"] is True and body["status"] == "given"
    assert body["receipt_id"] == receipt_id and body["notice_version"] == 1
    assert body["subject_id"].startswith("sub_") and body["given_at"]
    header, claims = decode_decision(client, body["decision"], audience=platform["client_id"])
    assert header["typ"] == "consent-decision+jwt" and header["alg"] == "EdDSA"
    assert claims["allowed"] is True and claims["status"] == "given"
    assert claims["purpose"] == "social_matching" and claims["network"] == "facebook"
    assert 0 < claims["exp"] - claims["iat"] <= 300


def test_check_by_subject_id_answers_the_same(app, client, token):
    give(app, "demo", "ana@example.test", newsletter=True)
    by_email = check(client, token, email="ana@example.test", purpose="newsletter").json
    by_id = check(client, token, subject_id=by_email["subject_id"], purpose="newsletter").json
    assert by_id["allowed"] is True and by_id["receipt_id"] == by_email["receipt_id"]


@pytest.mark.parametrize("asked, expected", [
    ({"purpose": "social_matching", "network": "linkedin"}, "refused"),
    ({"purpose": "newsletter"}, "refused"),
])
def test_consent_to_one_network_allows_no_other_purpose(app, client, token, asked, expected):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    body = check(client, token, email="ana@example.test", **asked).json
    assert body["allowed"] is False and body["status"] == expected


def test_a_requested_but_unconfirmed_consent_is_not_allowed(app, client, token):
    sign_up(app, "demo", "ana@example.test", networks=["facebook"])
    body = check(client, token, email="ana@example.test", purpose="social_matching",
                 network="facebook").json
    assert body == {**body, "allowed": False, "status": "requested", "receipt_id": None}


def test_an_unknown_email_is_unknown_not_an_error(client, token):
    body = check(client, token, email="nobody@example.test", purpose="newsletter").json
    assert body["allowed"] is False and body["status"] == "unknown" and body["subject_id"] is None
    assert body["decision"]


def test_another_campaigns_token_never_sees_this_campaigns_supporters(app, client, runner, token):
    run_json(runner, "campaign", "create", "other", "--name", "Other", "--controller", "Other",
             "--contact-email", "dpo@other.test", "--policy-url", "https://other.test/p")
    other = run_json(runner, "client", "create", "other")
    other_token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                              headers=basic(other["client_id"], other["client_secret"])
                              ).json["access_token"]
    give(app, "demo", "ana@example.test", networks=["facebook"])
    mine = check(client, token, email="ana@example.test", purpose="social_matching",
                 network="facebook").json
    theirs = check(client, other_token, email="ana@example.test", purpose="social_matching",
                   network="facebook").json
    assert theirs["status"] == "unknown" and theirs["subject_id"] is None
    by_id = check(client, other_token, subject_id=mine["subject_id"], purpose="social_matching",
                  network="facebook").json
    assert by_id["status"] == "unknown" and by_id["subject_id"] is None
    receipt = client.get(f"/api/v1/receipts/{mine['receipt_id']}",
                         headers={"Authorization": f"Bearer {other_token}"})
    assert receipt.status_code == 404


def test_withdrawal_is_answered_at_once(app, client, token):
    give(app, "demo", "ana@example.test", networks=["facebook"])
    assert check(client, token, email="ana@example.test", purpose="social_matching",
                 network="facebook").json["allowed"] is True
    give(app, "demo", "ana@example.test")  # a confirmed form with nothing ticked
    body = check(client, token, email="ana@example.test", purpose="social_matching",
                 network="facebook").json
    assert body["allowed"] is False and body["status"] == "withdrawn"
    assert body["receipt_id"]  # the superseding receipt proves when the consent ended


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer forged-token", "Basic abc",
                                  "Bearer " + "x" * 5000])
def test_check_without_a_valid_token_is_401_json(client, campaign, auth):
    headers = {"Authorization": auth} if auth else {}
    response = client.post("/api/v1/consents/check", json={"email": "a@b.test",
                                                           "purpose": "newsletter"},
                           headers=headers)
    assert response.status_code == 401
    assert set(response.json) == {"error", "message"}
    assert response.headers.get("WWW-Authenticate", "").lower().startswith("bearer")


def test_an_expired_token_is_refused(app, client, token):
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(OAuthToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = check(client, token, email="ana@example.test", purpose="newsletter")
    assert response.status_code == 401


def test_a_revoked_client_loses_its_tokens(app, client, token):
    from consent_widget.models import OAuthClient
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(OAuthClient).values(revoked_at=utcnow()))
    assert check(client, token, email="a@example.test", purpose="newsletter").status_code == 401


@pytest.mark.parametrize("body, code", [
    ({"email": "ana@example.test"}, "invalid_purpose"),
    ({"email": "ana@example.test", "purpose": "ads"}, "invalid_purpose"),
    ({"email": "ana@example.test", "purpose": "social_matching"}, "invalid_network"),
    ({"email": "ana@example.test", "purpose": "social_matching", "network": "myspace"},
     "invalid_network"),
    ({"email": "ana@example.test", "purpose": "newsletter", "network": "facebook"},
     "invalid_network"),
    ({"purpose": "newsletter"}, "invalid_subject"),
    ({"email": "a@example.test", "subject_id": "sub_x", "purpose": "newsletter"},
     "invalid_subject"),
    ({"email": "not an email", "purpose": "newsletter"}, "invalid_email"),
    ({"email": ["a@example.test"], "purpose": "newsletter"}, "invalid_email"),
    ({"email": "a" * 300 + "@example.test", "purpose": "newsletter"}, "invalid_email"),
    ({"subject_id": 12, "purpose": "newsletter"}, "invalid_subject"),
    ({"subject_id": "\ud800", "purpose": "newsletter"}, "invalid_subject"),
    ({"subject_id": "sub_\x00", "purpose": "newsletter"}, "invalid_subject"),
    ({"subject_id": "sub_\nx", "purpose": "newsletter"}, "invalid_subject"),
])
def test_bad_check_input_is_a_clear_400(app, client, token, body, code):
    before = counts(app)
    response = check(client, token, **body)
    assert response.status_code == 400
    assert response.json["error"] == code and response.json["message"]
    assert counts(app) == before


def test_non_json_and_oversized_bodies_are_refused(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/consents/check", data="email=a", headers=headers).status_code == 415
    assert client.post("/api/v1/consents/check", data="[1]", content_type="application/json",
                       headers=headers).status_code == 400
    assert client.post("/api/v1/consents/check", data="{bad json", content_type="application/json",
                       headers=headers).status_code == 400
    big = {"email": "a@example.test", "purpose": "newsletter", "pad": "x" * 20000}
    assert client.post("/api/v1/consents/check", json=big, headers=headers).status_code == 413


def _chunked_check(client, token, body: bytes):
    """A check whose body comes without a length, as gunicorn passes on a chunked request
    (``wsgi.input_terminated``)."""
    return client.post("/api/v1/consents/check", input_stream=io.BytesIO(body),
                       content_type="application/json",
                       headers={"Authorization": f"Bearer {token}",
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_body_without_a_length_is_read_only_as_far_as_the_limit(client, token):
    question = {"email": "a@example.test", "purpose": "newsletter"}
    response = _chunked_check(client, token, json.dumps(question).encode())
    assert response.status_code == 200 and response.json["allowed"] is False
    big = dict(question, pad="x" * 20000)
    response = _chunked_check(client, token, json.dumps(big).encode())
    assert response.status_code == 413 and response.json["error"] == "payload_too_large"


@pytest.mark.parametrize("content_type, body, status", [
    # JSON as werkzeug's is_json names it: parameters and case aside, or any application/*+json.
    ("application/json; charset=utf-8", None, 200),
    ("Application/JSON", None, 200),
    ("application/merge-patch+json", None, 200),
    ("text/json", None, 415),
    ("application/jsonp", None, 415),
    ("", None, 415),
    # Bytes that are not JSON (json.loads, like werkzeug's get_json, also reads UTF-16 and
    # UTF-32 JSON by its first bytes; this is no JSON in any of them), or JSON that is not an
    # object: a clear 400.
    ("application/json", b"\xff\xfe{\x00", 400),
    ("application/json", b'"a string"', 400),
    ("application/json", b"[" * 5000 + b"]" * 5000, 400),  # deeper than the parser goes
])
def test_the_check_reads_json_bodies_as_werkzeug_names_them(client, token, content_type, body,
                                                            status):
    question = json.dumps({"email": "a@example.test", "purpose": "newsletter"}).encode()
    response = client.post("/api/v1/consents/check", data=question if body is None else body,
                           content_type=content_type,
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.json
    if status != 200:
        assert response.json["error"] in ("unsupported_media_type", "invalid_json")


def test_wrong_method_and_unknown_route_are_json_4xx(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get("/api/v1/consents/check", headers=headers)
    assert response.status_code == 405 and response.json["error"]
    response = client.get("/api/v1/nothing", headers=headers)
    assert response.status_code == 404 and response.json["error"]


def test_receipt_endpoint_returns_the_jws_and_claims(app, client, token):
    receipt_id = give(app, "demo", "ana@example.test", newsletter=True)
    response = client.get(f"/api/v1/receipts/{receipt_id}",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json["claims"]["consentReceiptID"] == receipt_id
    header = jwt.get_unverified_header(response.json["jws"])
    key = jwks_keys(client)[header["kid"]]
    assert jwt.decode(response.json["jws"], key, algorithms=["EdDSA"],
                      options={"verify_aud": False})["consentReceiptID"] == receipt_id
    assert client.get("/api/v1/receipts/nope",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 404
    assert client.get(f"/api/v1/receipts/{receipt_id}-and-more",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 404


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # the write lock is SQLite's
def test_api_requests_never_wait_for_the_sqlite_write_lock(app, client, token):
    """Checks only read: neither a valid token (first seen by this process's rate limiter) nor
    a forged one may open a write transaction and queue behind signups."""
    url = app.config["DATABASE_URL"]
    from consent_widget import keys, limits
    with app.app_context(), db.transaction() as session:
        keys.active_key(session)  # a ready service: the first key is the one write a check makes
    limits._TOKEN_CLIENTS.clear()  # the limiter looks the token up again, as a new process would
    writer = sqlite3.connect(make_url(url).database, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # another writer holds the database
    answers = {}

    def ask():
        answers["valid"] = check(client, token, email="ana@example.test",
                                 purpose="newsletter").status_code
        answers["forged"] = check(client, "forged-token", email="ana@example.test",
                                  purpose="newsletter").status_code

    asking = threading.Thread(target=ask)
    asking.start()
    asking.join(timeout=10)  # a request waiting for the writer would wait for it
    answered_while_locked = dict(answers)
    writer.rollback()
    asking.join()
    assert answered_while_locked == {"valid": 200, "forged": 401}


def test_an_ordinary_address_is_found_however_it_is_spelt(app, client, token):
    """Addresses on ordinary domains take the fast normalisation (tests mostly use ``.test``,
    which email-validator handles): the widget's and the API's spellings must meet."""
    give(app, "demo", "Ana.Supporter@Example.ORG", networks=["facebook"])
    for spelling in ("ana.supporter@example.org", " ANA.SUPPORTER@example.org\t"):
        answer = check(client, token, email=spelling, purpose="social_matching",
                       network="facebook").json
        assert (answer["allowed"], answer["status"]) == (True, "given"), spelling
    stranger = check(client, token, email="ana.supporter@example.com", purpose="social_matching",
                     network="facebook").json
    assert stranger["status"] == "unknown"


def test_the_first_key_is_written_apart_from_a_check_that_only_reads(app):
    """A check reads in a transaction that cannot write on SQLite once another writer has
    committed; the first signing key, which two first checks may both need, is made apart."""
    from sqlalchemy import func, select

    from consent_widget import api, keys, receipts
    from consent_widget.models import Campaign, SigningKey

    def decision():
        return api._signed(receipts.decision_claims({"q": 1}), receipts.DECISION_TYP)

    def key_count():
        with app.app_context():
            return db.session().scalar(select(func.count()).select_from(SigningKey))

    with app.test_request_context():
        db.read_only()
        db.session().scalar(select(func.count()).select_from(Campaign))  # the read has begun
        with app.app_context(), db.transaction() as session:
            made = keys.active_key(session).kid  # meanwhile, another request makes the key
        keys._signers.clear()  # a process that has not signed since
        token = decision()
        claims = receipts.verify(db.session(), token, receipts.DECISION_TYP)
    assert claims["q"] == 1 and jwt.get_unverified_header(token)["kid"] == made
    assert key_count() == 1


def test_a_check_before_any_key_exists_makes_one(app):
    from consent_widget import api, keys, receipts
    keys._signers.clear()
    with app.test_request_context():
        db.read_only()
        token = api._signed(receipts.decision_claims({"q": 2}), receipts.DECISION_TYP)
        assert receipts.verify(db.session(), token, receipts.DECISION_TYP)["q"] == 2


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # the write lock is SQLite's
def test_a_read_only_request_writes_apart_under_the_write_lock_and_reads_on(app):
    """db.writing() takes the write lock for its own transaction only: the request's later
    transactions begin as reads again, and a thread holding the lock is told at once rather
    than left waiting for itself."""
    from sqlalchemy import select

    from consent_widget.models import Campaign

    def holds_lock(session) -> bool:
        return session.connection().connection.dbapi_connection._holds_lock

    with app.test_request_context():
        db.read_only()
        with db.writing() as writer:
            assert holds_lock(writer)
        session = db.session()
        session.scalars(select(Campaign)).all()
        assert not holds_lock(session)
    with app.app_context():
        with db.transaction() as session:
            assert holds_lock(session)
            with pytest.raises(RuntimeError, match="holds the write lock"):
                with db.writing():
                    pass


def test_a_check_signs_with_a_known_key_without_opening_a_session(app):
    """Once this process has read the current key, signing opens no ORM session; a process
    that has not (or whose read is older than SIGNER_TTL) reads the key ring again."""
    from flask import g

    from consent_widget import api, keys, receipts
    with app.test_request_context():
        db.read_only()
        api._signed(receipts.decision_claims({"q": 3}), receipts.DECISION_TYP)  # reads the key
        db.close_session()
        token = api._signed(receipts.decision_claims({"q": 4}), receipts.DECISION_TYP)
        assert "db_session" not in g
        assert receipts.verify(db.session(), token, receipts.DECISION_TYP)["q"] == 4
        engine = db.engine()
        deadline, kid, key = keys._signers[engine]
        keys._signers[engine] = (0.0, kid, key)  # its read is too old: read the ring again
        assert keys.sign_cached(engine, {"q": 5}, receipts.DECISION_TYP) is None
        keys._signers.clear()
        assert keys.sign_cached(engine, {"q": 5}, receipts.DECISION_TYP) is None
