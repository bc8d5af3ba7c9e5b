"""Receipts, decisions and keys: what an auditor, a supporter or a platform can check.

Receipts are verified the way an outsider would: PyJWT and the published JWKS, nothing of ours.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
import warnings
from datetime import date, timedelta

import jwt
import pytest
from flask import render_template_string
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import run_json
from consent_widget import campaigns, db, keys, ledger, mail, notices, receipts
from consent_widget.emails import lookup_key
from consent_widget.models import ConsentState, Notice, Receipt, SigningKey, utcnow
from helpers import withdraw as withdraw_consents

EMAIL = "ana.supporter@example.test"
ORIGIN = "https://marie2027.test"
JWKS_URL = "/.well-known/jwks.json"
ISSUER = "http://consent.test"
KANTARA_REQUIRED = {"version": str, "jurisdiction": str, "consentTimestamp": int,
                    "collectionMethod": str, "consentReceiptID": str, "piiPrincipalId": str,
                    "piiControllers": list, "policyUrl": str, "services": list, "sensitive": bool,
                    "spiCat": list}


@pytest.fixture(autouse=True)
def no_mail(monkeypatch):
    """The ledger queues emails in the same transaction; their content has its own tests."""
    monkeypatch.setattr(mail, "queue_confirmation", lambda *args, **kwargs: None)
    monkeypatch.setattr(mail, "queue_receipt", lambda *args, **kwargs: None)


def give(app, newsletter=False, networks=(), locale="en", now=None) -> str:
    """Sign EMAIL up through the widget's domain call, confirm it; return the receipt id."""
    with app.app_context():
        with db.transaction() as session:
            campaign = campaigns.by_slug(session, "demo")
            choices = [ledger.Choice(purpose, network,
                                     notices.current_notice(session, campaign, purpose, network,
                                                            locale),
                                     newsletter if purpose == "newsletter" else network in networks)
                       for purpose, network in notices.offered_items(campaign)]
            signup = ledger.record_signup(session, campaign, EMAIL, choices,
                                          key=lookup_key(app.config), locale=locale, origin=ORIGIN)
        with db.transaction() as session:
            return ledger.confirm(session, campaign, signup, now=now).id


def withdraw(app, purpose=None, network=None, now=None) -> str:
    """Withdraw EMAIL's matching consents from the manage page; return the new receipt id."""
    return withdraw_consents(app, "demo", EMAIL, purpose, network, locale="en", now=now).id


def stored(app, receipt_id: str) -> Receipt:
    with app.app_context():
        return db.session().get(Receipt, receipt_id)


def published_key(client, kid: str) -> jwt.PyJWK:
    """The key with this kid from the public JWKS, as any outside verifier would get it."""
    [jwk] = [key for key in client.get(JWKS_URL).get_json()["keys"] if key["kid"] == kid]
    return jwt.PyJWK(jwk)


def pyjwt_claims(client, token: str) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, published_key(client, kid), algorithms=["EdDSA"], issuer=ISSUER)


# --- receipts as an outsider sees them ---------------------------------------------------------
def test_receipt_verifies_with_pyjwt_against_the_published_jwks(app, client, campaign):
    receipt_id = give(app, newsletter=True, networks=["facebook"])
    row = stored(app, receipt_id)
    assert jwt.get_unverified_header(row.jws) == {"alg": "EdDSA", "kid": row.kid,
                                                  "typ": "consent-receipt+jwt"}
    claims = pyjwt_claims(client, row.jws)
    assert claims["consentReceiptID"] == claims["jti"] == receipt_id


def test_receipt_carries_every_kantara_required_field_spelled_and_typed_exactly(app, campaign):
    receipt_id = give(app, newsletter=True, networks=["facebook"])
    claims = receipts.decode(stored(app, receipt_id))
    for field, kind in KANTARA_REQUIRED.items():
        assert type(claims[field]) is kind, field  # `is`: a bool is not an int timestamp
    assert claims["version"] == "KI-CR-v1.1.0"
    assert uuid.UUID(claims["consentReceiptID"]).version == 4
    assert claims["sensitive"] is True and claims["spiCat"] == ["political opinions"]
    assert claims["jurisdiction"] == "FR"
    assert claims["policyUrl"] == "https://marie2027.test/privacy"
    [controller] = claims["piiControllers"]
    assert controller["piiController"] == "Association Marie 2027"
    assert controller["email"] == "dpo@marie2027.test" and isinstance(controller["phone"], str)
    assert isinstance(controller["contact"], str) and isinstance(controller["address"], dict)


def test_receipt_names_the_subject_by_opaque_id_never_by_email(app, campaign):
    receipt_id = give(app, newsletter=True)
    row = stored(app, receipt_id)
    with app.app_context():
        subject = ledger.find_subject(db.session(), campaigns.by_slug(db.session(), "demo"),
                                      EMAIL, lookup_key(app.config))
    claims = receipts.decode(row)
    assert claims["piiPrincipalId"] == claims["sub"] == subject.public_id
    payload = base64.urlsafe_b64decode(row.jws.split(".")[1] + "==").decode()
    assert EMAIL not in payload and "@example.test" not in payload


def test_receipt_has_one_explicit_service_per_given_consent_with_the_text_shown(app, campaign):
    claims = receipts.decode(stored(app, give(app, newsletter=True, networks=["facebook"])))
    services = {service["service"]: service["purposes"] for service in claims["services"]}
    assert list(services) == ["newsletter", "social_matching:facebook"]  # linkedin was refused
    [newsletter], [facebook] = services["newsletter"], services["social_matching:facebook"]
    with app.app_context():
        shown = notices.notice_text(campaigns.by_slug(db.session(), "demo"), "social_matching",
                                    "facebook", "en")
    assert facebook["purpose"] == shown
    for purpose in (newsletter, facebook):
        assert purpose["consentType"] == "EXPLICIT"
        assert purpose["purposeCategory"] and purpose["piiCategory"]
        assert isinstance(purpose["primaryPurpose"], bool) and purpose["termination"]
    assert newsletter["thirdPartyDisclosure"] is False and "thirdPartyName" not in newsletter
    assert facebook["thirdPartyDisclosure"] is True and facebook["thirdPartyName"] == "Facebook"
    assert {"public social profile", "location", "biography"} <= set(facebook["piiCategory"])


def test_receipt_ext_records_notices_origin_events_and_every_state(app, campaign):
    receipt_id = give(app, newsletter=True, networks=["facebook"])
    ext = receipts.decode(stored(app, receipt_id))["ext"]
    assert (ext["campaign"], ext["language"], ext["origin"]) == ("demo", "en", ORIGIN)
    with app.app_context():
        texts = {(n.purpose, n.network): n.text for n in db.session().scalars(select(Notice))
                 if n.locale == "en"}
    for notice in ext["notices"]:
        assert notice["version"] == 1 and notice["locale"] == "en"
        text = texts[(notice["purpose"], notice["network"])]
        assert notice["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    statuses = {(s["purpose"], s["network"]): s["status"] for s in ext["states"]}
    assert statuses == {("newsletter", ""): "given", ("social_matching", "facebook"): "given",
                        ("social_matching", "linkedin"): "refused"}
    newsletter_events = [e for e in ext["events"] if e["purpose"] == "newsletter"]
    assert [(e["type"], e["state"]) for e in newsletter_events] == [
        ("requested", "ConsentRequested"), ("given", "ConsentGiven")]
    given = newsletter_events[1]
    assert given["time"].endswith("Z") and given["actor"] == "subject"
    assert given["validity"] == "P730D" and given["expiresAt"].endswith("Z")
    assert ext["supersedes"] is None
    assert "manage link" in ext["withdrawalMethod"] and ext["retention"] and ext["recipients"]


def test_issuing_stores_the_receipt_and_points_every_state_at_it(app, campaign):
    receipt_id = give(app, newsletter=True, networks=["linkedin"])
    with app.app_context():
        session = db.session()
        row = session.get(Receipt, receipt_id)
        assert row.supersedes is None and row.kid == keys.active_key(session).kid
        assert {s.receipt_id for s in session.scalars(select(ConsentState))} == {receipt_id}


def test_withdrawal_issues_a_receipt_that_supersedes_the_previous_one(app, client, campaign):
    first = give(app, newsletter=True, networks=["facebook"])
    second = withdraw(app, "social_matching", "facebook")
    assert stored(app, second).supersedes == first
    claims = pyjwt_claims(client, stored(app, second).jws)
    assert claims["ext"]["supersedes"] == first
    assert [service["service"] for service in claims["services"]] == ["newsletter"]
    statuses = {s["network"]: s["status"] for s in claims["ext"]["states"]}
    assert statuses["facebook"] == "withdrawn"
    assert "withdrawal" in claims["collectionMethod"]


def test_supersedes_follows_the_chain_even_when_receipts_share_a_timestamp(app, campaign):
    moment = utcnow()
    chain = [give(app, newsletter=True, networks=["facebook", "linkedin"], now=moment)]
    for purpose, network in (("social_matching", "facebook"), ("social_matching", "linkedin"),
                             ("newsletter", None)):
        chain.append(withdraw(app, purpose, network, now=moment))
    assert [stored(app, receipt_id).supersedes for receipt_id in chain] == [None, *chain[:-1]]
    # The last receipt records the end of all three consents.
    assert {s["service"] for s in receipts.decode(stored(app, chain[-1]))["services"]} == {
        "newsletter", "social_matching:facebook", "social_matching:linkedin"}


# --- keys --------------------------------------------------------------------------------------
def test_jwks_publishes_only_public_ed25519_keys_with_a_short_cache(app, client):
    with app.app_context():
        with db.transaction() as session:
            kid = keys.active_key(session).kid
    response = client.get(JWKS_URL)
    assert "max-age=300" in response.headers["Cache-Control"]
    [jwk] = response.get_json()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}  # never "d", the private part
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    assert jwk["kid"] == kid == OKPKey.import_key(jwk).thumbprint()


def test_active_key_is_created_once_and_rotation_retires_it(app):
    with app.app_context():
        with db.transaction() as session:
            first = keys.active_key(session)
            assert keys.active_key(session).kid == first.kid
            second = keys.rotate_key(session)
            assert first.retired_at is not None and second.retired_at is None
            assert keys.active_key(session).kid == second.kid
            assert [k["kid"] for k in keys.jwks(session)["keys"]] == [second.kid, first.kid]


def _kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_a_rotation_in_this_process_signs_with_the_new_key_at_once(app):
    def sign() -> str:
        with app.app_context(), db.transaction() as session:  # a session per request
            return _kid_of(keys.sign(session, {}, receipts.DECISION_TYP))

    with app.app_context(), db.transaction() as session:
        keys.active_key(session)
    before = sign()
    # Another process rotates: this one keeps signing with the key it read, still published.
    elsewhere = db.make_engine(app.config["DATABASE_URL"])
    with Session(elsewhere) as session, session.begin():
        keys.rotate_key(session)
    elsewhere.dispose()
    assert sign() == before
    with app.app_context(), db.transaction() as session:
        new = keys.rotate_key(session).kid
    assert sign() == new != before


def test_a_key_created_in_a_rolled_back_transaction_is_never_signed_with(app):
    with app.app_context():
        session = db.session()
        lost = _kid_of(keys.sign(session, {"n": 1}, receipts.DECISION_TYP))
        session.rollback()  # the key created on first use never reached the database
        with db.transaction() as session:
            token = keys.sign(session, {"n": 2}, receipts.DECISION_TYP)
            assert _kid_of(token) != lost
            assert keys.verify_signature(session, token, receipts.DECISION_TYP)["n"] == 2
            assert session.get(SigningKey, lost) is None


def test_keys_rotate_keeps_old_receipts_verifiable_and_signs_new_ones(app, client, runner,
                                                                      campaign):
    first = give(app, newsletter=True, networks=["facebook"])
    old_kid = stored(app, first).kid
    new_kid = run_json(runner, "keys", "rotate")["kid"]
    assert new_kid != old_kid
    assert {k["kid"] for k in client.get(JWKS_URL).get_json()["keys"]} == {old_kid, new_kid}
    assert pyjwt_claims(client, stored(app, first).jws)["jti"] == first
    with app.app_context():
        assert receipts.verify(db.session(), stored(app, first).jws, receipts.RECEIPT_TYP)
    second = stored(app, withdraw(app, "social_matching", "facebook"))
    assert second.kid == jwt.get_unverified_header(second.jws)["kid"] == new_kid
    assert pyjwt_claims(client, second.jws)["ext"]["supersedes"] == first


# --- verification refuses everything that is not ours ------------------------------------------
def b64(data: bytes | str) -> str:
    data = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header, payload: bytes, signature: bytes = b"") -> str:
    return ".".join((b64(json.dumps(header)), b64(payload), b64(signature)))


def raw_sign(header: dict, payload: bytes, pem: str) -> str:
    """Sign any header with the raw Ed25519 key: what a holder of the key, or a bug, could emit."""
    signing_input = f"{b64(json.dumps(header))}.{b64(payload)}"
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


@pytest.fixture
def genuine(app, campaign):
    """A genuine receipt token and the stored key that signed it."""
    row = stored(app, give(app, newsletter=True))
    with app.app_context():
        key = db.session().get(SigningKey, row.kid)
    header, payload, signature = row.jws.split(".")
    return {"token": row.jws, "kid": row.kid, "pem": key.private_pem,
            "header": json.loads(base64.urlsafe_b64decode(header + "==")),
            "payload": base64.urlsafe_b64decode(payload + "=="), "signature": signature}


def _tampered(g):
    claims = json.loads(g["payload"])
    claims["ext"]["states"][0]["status"] = "withdrawn"
    header, _, signature = g["token"].split(".")
    return f"{header}.{b64(json.dumps(claims))}.{signature}"


def _swapped_signature(g):
    other = raw_sign(g["header"], b'{"consentReceiptID":"x"}', g["pem"])
    return g["token"].rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _hs256_with_public_key(g):
    header = dict(g["header"], alg="HS256")
    public_pem = OKPKey.import_key(g["pem"]).as_pem(private=False)
    signing_input = f"{b64(json.dumps(header))}.{b64(g['payload'])}".encode()
    return compact(header, g["payload"], hmac.new(public_pem, signing_input, "sha256").digest())


def _unknown_key(g):
    stranger = OKPKey.generate_key("Ed25519")
    header = dict(g["header"], kid=stranger.thumbprint())
    return raw_sign(header, g["payload"], stranger.as_pem(private=True).decode())


#: Forged or malformed token → the reason verify must give for refusing it.
FORGERIES = {
    "tampered payload": (_tampered, "signature does not match"),
    "swapped signature": (_swapped_signature, "signature does not match"),
    "alg none": (lambda g: compact(dict(g["header"], alg="none"), g["payload"]),
                 "'none' is not accepted"),
    "alg none, no kid": (lambda g: compact({"alg": "none"}, g["payload"]), "not accepted"),
    "HS256 keyed with the public key": (_hs256_with_public_key, "'HS256' is not accepted"),
    "Ed25519 alg name": (lambda g: raw_sign(dict(g["header"], alg="Ed25519"), g["payload"],
                                            g["pem"]), "'Ed25519' is not accepted"),
    "wrong typ": (lambda g: raw_sign(dict(g["header"], typ="JWT"), g["payload"], g["pem"]),
                  "got typ 'JWT'"),
    "decision typ": (lambda g: raw_sign(dict(g["header"], typ=receipts.DECISION_TYP),
                                        g["payload"], g["pem"]), "got typ 'consent-decision"),
    "no typ": (lambda g: raw_sign({"alg": "EdDSA", "kid": g["kid"]}, g["payload"], g["pem"]),
               "got typ None"),
    "unknown kid": (_unknown_key, "key id is not one of our keys"),
    "kid with NUL": (lambda g: compact(dict(g["header"], kid="\u0000"), g["payload"], b"x" * 64),
                     "key id is not one of our keys"),
    "kid not a string": (lambda g: compact(dict(g["header"], kid=7), g["payload"], b"x" * 64),
                         "key id is not one of our keys"),
    "jku header": (lambda g: raw_sign(dict(g["header"], jku="https://evil.test/jwks.json"),
                                      g["payload"], g["pem"]), "unexpected header parameters: jku"),
    "crit header": (lambda g: raw_sign(dict(g["header"], crit=["exp"], exp=1), g["payload"],
                                       g["pem"]), "unexpected header parameters: crit, exp"),
    "header is a list": (lambda g: ".".join((b64('["alg"]'), b64(g["payload"]), "AAAA")),
                         "header is not a JSON object"),
    "payload is a list": (lambda g: raw_sign(g["header"], b'["not", "claims"]', g["pem"]),
                          "payload is not a JSON object"),
    "payload not JSON": (lambda g: raw_sign(g["header"], b"\xff\xfe", g["pem"]),
                         "payload is not JSON"),
    "oversized": (lambda g: compact(g["header"], b"x" * (64 * 1024), b"x" * 64), "longer than"),
    "garbage": (lambda g: "garbage", "not a JWS"),
    "empty": (lambda g: "", "non-empty string"),
    "two segments": (lambda g: g["token"].rsplit(".", 1)[0], "not a JWS"),
    "four segments": (lambda g: g["token"] + ".AAAA", "not a JWS"),
    "bad base64": (lambda g: "!!!.@@@.###", "not a JWS"),
    "non-ASCII": (lambda g: "é.é.é", "not a JWS"),
    "header not JSON": (lambda g: ".".join((b64("alg"), b64(g["payload"]), "AAAA")), "not a JWS"),
    "not a string": (lambda g: None, "non-empty string"),
    "bytes": (lambda g: g["token"].encode(), "non-empty string"),
}


@pytest.mark.parametrize(("forge", "reason"), FORGERIES.values(), ids=FORGERIES.keys())
def test_verify_refuses_forged_and_malformed_tokens(app, genuine, forge, reason):
    token = forge(genuine)
    with app.app_context():
        assert receipts.verify(db.session(), genuine["token"], receipts.RECEIPT_TYP)
        with pytest.raises(receipts.InvalidSignature) as refused:
            receipts.verify(db.session(), token, receipts.RECEIPT_TYP)
    assert reason in str(refused.value)


def test_no_corruption_of_a_token_escapes_as_another_error_or_changes_its_claims(app, genuine):
    token = genuine["token"]
    dots = [i for i, char in enumerate(token) if char == "."]
    # Every segment's edges (where padding bits and separators live), and a sample in between.
    positions = sorted({p for edge in (0, *dots, len(token) - 1) for p in range(edge - 2, edge + 3)
                        if 0 <= p < len(token)} | set(range(0, len(token), 13)))
    with app.app_context():
        original = receipts.verify(db.session(), token, receipts.RECEIPT_TYP)
        for position in positions:
            for replacement in "A.-_=~":
                corrupted = token[:position] + replacement + token[position + 1:]
                try:
                    claims = receipts.verify(db.session(), corrupted, receipts.RECEIPT_TYP)
                except receipts.InvalidSignature:
                    continue
                # Only base64 padding bits can change without changing a signed byte.
                assert claims == original, (position, replacement)


# --- decisions ---------------------------------------------------------------------------------
def test_decision_is_valid_for_at_most_five_minutes_then_refused(app, client):
    issued = utcnow() - timedelta(seconds=400)
    with app.app_context():
        with db.transaction() as session:
            token = receipts.sign_decision(session, {"iss": ISSUER, "aud": "client-1",
                                                     "allowed": True}, now=issued)
        session = db.session()
        header = jwt.get_unverified_header(token)
        assert (header["typ"], header["alg"]) == ("consent-decision+jwt", "EdDSA")
        claims = receipts.verify(session, token, receipts.DECISION_TYP,
                                 now=issued + timedelta(seconds=299))
        assert claims["exp"] - claims["iat"] == app.config["DECISION_TTL"] <= 300
        assert uuid.UUID(claims["jti"]).version == 4 and claims["allowed"] is True
        with pytest.raises(receipts.InvalidSignature, match="expired"):
            receipts.verify(session, token, receipts.DECISION_TYP,
                            now=issued + timedelta(seconds=app.config["DECISION_TTL"]))
        with pytest.raises(receipts.InvalidSignature, match="expired"):
            receipts.verify(session, token, receipts.DECISION_TYP)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, published_key(client, header["kid"]), algorithms=["EdDSA"],
                   audience="client-1")


def test_fresh_decision_about_an_unknown_email_verifies_with_pyjwt(app, client):
    with app.app_context():
        with db.transaction() as session:
            token = receipts.sign_decision(session, {
                "iss": ISSUER, "aud": "client-1", "sub": None, "status": "unknown",
                "subject_id": None})
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, published_key(client, kid), algorithms=["EdDSA"],
                        audience="client-1", issuer=ISSUER)
    assert "sub" not in claims and claims["status"] == "unknown" and claims["subject_id"] is None


def test_decision_claiming_a_longer_life_than_five_minutes_is_refused(app):
    with app.app_context():
        with db.transaction() as session:
            now = int(utcnow().timestamp())
            token = keys.sign(session, {"iat": now, "exp": now + 301},
                                  receipts.DECISION_TYP)
            with pytest.raises(receipts.InvalidSignature, match="300 seconds"):
                receipts.verify(session, token, receipts.DECISION_TYP)


def test_a_receipt_is_not_accepted_as_a_decision(app, genuine):
    with app.app_context():
        with pytest.raises(receipts.InvalidSignature, match="typ"):
            receipts.verify(db.session(), genuine["token"], receipts.DECISION_TYP)


def test_signing_and_verifying_leak_no_eddsa_deprecation_warning(app):
    with app.app_context():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with db.transaction() as session:
                token = receipts.sign_decision(session, {"aud": "client-1"})
                receipts.verify(session, token, receipts.DECISION_TYP)


@pytest.mark.parametrize("claims", [
    {}, {"aud": "client-1", "n": 1, "allowed": True, "given_at": None},
    {"controller": "Équipe « Marseille »", "emoji": "\U0001F5F3", "nested": {"b": [1, 2.5]}}])
def test_tokens_are_the_bytes_joserfc_serializes_and_verify_with_it(app, claims):
    # keys signs without joserfc's per-token steps (header and key checked once); Ed25519 is
    # deterministic, so the token must be byte for byte joserfc's own for the same input.
    with app.app_context():
        with db.transaction() as session:
            token = keys.sign(session, claims, receipts.DECISION_TYP)
            key = keys.active_key(session)
        private = OKPKey.import_key(key.private_pem)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc's notice that RFC 9864 renames EdDSA
            expected = jws.serialize_compact(
                {"alg": "EdDSA", "kid": key.kid, "typ": receipts.DECISION_TYP},
                keys.canonical_json(claims), private, algorithms=["EdDSA"])
            decoded = jws.deserialize_compact(token, OKPKey.import_key(key.public_jwk),
                                              algorithms=["EdDSA"])
        assert token == expected
        assert json.loads(decoded.payload) == claims


# --- the human-readable receipt and the GPC resource -------------------------------------------
CARD = '{% from "receipt.html" import receipt_card %}{{ receipt_card(claims, email=email) }}'


def test_receipt_card_shows_the_receipt_in_words(app, campaign):
    first = give(app, newsletter=True, networks=["facebook"])
    second = withdraw(app, "social_matching", "facebook")
    claims = receipts.decode(stored(app, second))
    with app.test_request_context("/?lang=en"):
        html = render_template_string(CARD, claims=claims, email=EMAIL)
        anonymous = render_template_string(CARD, claims=claims, email=None)
    assert "Association Marie 2027" in html and "dpo@marie2027.test" in html
    assert second in html and first in html  # its number and the receipt it replaces
    assert "Newsletter" in html and "Matching with my Facebook profile" in html
    assert "Withdrawn" in html and "Given" in html
    assert "Withdrawal on the manage page linked from every email" in html
    assert claims["services"][0]["purposes"][0]["purpose"] in html
    assert claims["ext"]["notices"][0]["sha256"] in html
    assert "How to withdraw" in html and "/.well-known/jwks.json" in html
    assert EMAIL in html and EMAIL not in anonymous


def test_gpc_resource_announces_support(client):
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["gpc"] is True and date.fromisoformat(body["lastUpdate"]) <= date.today()


def test_a_receipt_after_withdrawing_everything_lists_what_ended(app, client, campaign):
    from helpers import give
    from test_links import link_path
    give(app, "demo", "ana@example.test", newsletter=True, networks=["facebook"])
    client.post(link_path(app, "manage", email="ana@example.test"), data={"withdraw": "all"})
    with app.app_context():
        newest = db.session().scalars(select(Receipt).order_by(Receipt.issued_at.desc(),
                                                               Receipt.id)).all()
        claims = [receipts.decode(r) for r in newest if r.supersedes][-1]
    services = {s["service"]: s["purposes"][0]["termination"] for s in claims["services"]}
    assert set(services) == {"newsletter", "social_matching:facebook"}
    assert all(t.startswith("consent withdrawn on ") for t in services.values())
    assert {s["status"] for s in claims["ext"]["states"]} >= {"withdrawn"}
    assert claims["ext"]["gpc"] is False and claims["ext"]["storageLocations"]


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # SQLite plans without statistics
def test_the_requests_a_receipt_names_are_found_by_signup_not_by_scanning_the_ledger(app):
    # A person who signed up twice has given consents from two signups: the read of their
    # requests must use the signup index however many signups it names.
    from consent_widget.receipts import _REQUESTS_OF_SIGNUPS
    with app.app_context():
        connection = db.session().connection()
        sql = str(_REQUESTS_OF_SIGNUPS.params(signups=[1, 2, 3]).compile(
            connection, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    assert any("ix_consent_events_signup_id" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_decision_ids_are_random_uuids_as_uuid4_writes_them():
    import uuid
    from consent_widget.receipts import new_jti
    ids = [new_jti() for _ in range(500)]
    assert len(set(ids)) == 500
    for jti in ids:
        parsed = uuid.UUID(jti)
        assert str(parsed) == jti and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_confirmations_events_read_in_one_statement_are_those_read_in_two(app, campaign,
                                                                           monkeypatch):
    # A confirmation names its signup, so the requests it confirmed are read with the states'
    # events; read afterwards from the events found, they must be the very same records.
    from helpers import confirm, sign_up
    from consent_widget.models import Campaign, Signup, Subject
    confirm(app, sign_up(app, "demo", "ana@example.test", newsletter=True,
                         networks=["facebook"]))
    with app.app_context():
        session = db.session()
        signup = session.scalars(select(Signup)).one()
        subject = session.get(Subject, signup.subject_id)
        camp = session.get(Campaign, signup.campaign_id)
        states = session.scalars(select(ConsentState).where(
            ConsentState.subject_id == subject.id)).all()
        connection = session.connection()
        reads, read = [], db.driver_rows
        monkeypatch.setattr(db, "driver_rows",
                            lambda *args: reads.append(args[1]) or read(*args))
        with_hint = receipts._event_records(connection, camp, states, {}, signup.id)
        with_hint_reads, reads[:] = len(reads), []
        without = receipts._event_records(connection, camp, states, {})
    assert with_hint == without
    assert (with_hint_reads, len(reads)) == (1, 2)
    given = [record for record in with_hint if record["type"] == "given"]
    requested = [record for record in with_hint if record["type"] == "requested"]
    assert len(given) == 2 and len(requested) == 2
