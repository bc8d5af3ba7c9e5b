"""Batch check, purge audit and event feed: many answers at once, each the same as one check."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json

from datetime import datetime, timedelta, timezone

import jwt
import pytest
from flask import jsonify
from sqlalchemy import select, update

from consent_widget import api, batch, db, emails, keys, receipts, state
from consent_widget.emails import InvalidEmail, normalise
from consent_widget.models import ConsentState, Subject, utcnow
from conftest import run_json
from helpers import counts, give, sign_up
from helpers import withdraw as withdraw_consents


@pytest.fixture
def token(client, runner, campaign):
    """A bearer token of a client of the ``demo`` campaign."""
    platform = run_json(runner, "client", "create", "demo")
    response = client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": platform["client_id"],
        "client_secret": platform["client_secret"]})
    return response.json["access_token"]


def post(client, token, path, body=None, **kwargs):
    return client.post(f"/api/v1/consents/{path}", json=body,
                       headers={"Authorization": f"Bearer {token}"}, **kwargs)


def withdraw(app, email, network=None):
    return withdraw_consents(app, "demo", email, "social_matching", network)


@pytest.fixture
def population(app, campaign):
    """A mixed population: given, withdrawn, never confirmed, other network, unknown."""
    give(app, "demo", "given@example.test", networks=["facebook"])
    give(app, "demo", "Withdrew@Example.test", networks=["facebook", "linkedin"])
    withdraw(app, "withdrew@example.test", "facebook")
    sign_up(app, "demo", "pending@example.test", networks=["facebook"])
    give(app, "demo", "linkedin-only@example.test", networks=["linkedin"])
    give(app, "demo", "newsletter@example.test", newsletter=True)
    return ["given@example.test", "nobody@example.test", "withdrew@EXAMPLE.test",
            "pending@example.test", "linkedin-only@example.test", " given@example.test ",
            "newsletter@example.test", "Withdrew@example.test"]


def decision_claims(client, token_jws, audience=None):
    keys = {k["kid"]: jwt.PyJWK(k) for k in client.get("/.well-known/jwks.json").json["keys"]}
    header = jwt.get_unverified_header(token_jws)
    return header, jwt.decode(token_jws, keys[header["kid"]], algorithms=["EdDSA"],
                              options={"verify_aud": False})


def test_batch_answers_in_order_and_agrees_with_single_checks(client, token, population):
    response = post(client, token, "check-batch", {"purpose": "social_matching",
                                                   "network": "facebook", "emails": population})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert len(results) == len(population)
    for email, result in zip(population, results):
        single = post(client, token, "check", {"purpose": "social_matching",
                                               "network": "facebook", "email": email}).json
        single.pop("decision")
        assert result == single, email
    assert [r["status"] for r in results] == ["given", "unknown", "withdrawn", "requested",
                                              "refused", "given", "refused", "withdrawn"]
    # Subject ids answer the same as the emails they stand for.
    ids = [r["subject_id"] or "sub_nobody" for r in results]
    by_id = post(client, token, "check-batch", {"purpose": "social_matching",
                                                "network": "facebook", "subject_ids": ids}).json
    assert [r["status"] for r in by_id["results"]] == [r["status"] for r in results]


def test_batch_decision_is_bound_to_the_exact_request_and_results(client, token, population):
    raw = json.dumps({"purpose": "social_matching", "network": "facebook",
                      "emails": population}).encode()
    response = post(client, token, "check-batch", data=raw, content_type="application/json")
    header, claims = decision_claims(client, response.json["decision"])
    assert header["typ"] == "consent-decision+jwt"
    assert claims["request_sha256"] == hashlib.sha256(raw).hexdigest()
    canonical = json.dumps(response.json["results"], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
    assert claims["results_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert (claims["count"], claims["allowed_count"]) == (8, 2)
    assert claims["exp"] - claims["iat"] <= 300
    other = post(client, token, "check-batch", {"purpose": "social_matching",
                                                "network": "facebook",
                                                "emails": population[:1]})
    assert decision_claims(client, other.json["decision"])[1]["request_sha256"] \
        != claims["request_sha256"]


def test_a_batch_of_many_chunks_answers_every_entry_in_order(client, token, population,
                                                              monkeypatch):
    # Duplicates and spellings of one address (the case of neither part counts) fall in
    # different chunks, and one chunk holds the same address twice: each entry still gets its
    # own answer, in its place.
    emails_asked = population * 3 + ["GIVEN@example.test", "given@EXAMPLE.TEST", "x@y.test"]
    question = {"purpose": "social_matching", "network": "facebook"}
    whole = post(client, token, "check-batch", {**question, "emails": emails_asked}).json
    monkeypatch.setattr(batch, "CHUNK", 3)
    chunked = post(client, token, "check-batch", {**question, "emails": emails_asked}).json
    assert chunked["results"] == whole["results"]
    statuses = [r["status"] for r in chunked["results"]]
    assert statuses == ["given", "unknown", "withdrawn", "requested", "refused", "given",
                        "refused", "withdrawn"] * 3 + ["given", "given", "unknown"]
    ids = [r["subject_id"] or "sub_nobody" for r in chunked["results"]]
    by_id = post(client, token, "check-batch", {**question, "subject_ids": ids}).json
    assert [r["status"] for r in by_id["results"]] == statuses
    audit = post(client, token, "purge-audit", {**question, "emails": emails_asked}).json
    assert [entry["index"] for entry in audit["purge"]] == [
        index for index, status in enumerate(statuses) if status != "given"]


def test_a_batch_answers_the_same_with_its_keys_bound_one_by_one(client, token, population,
                                                                 monkeypatch):
    # The expanding IN that a database without a list parameter gets (here: an SQLite
    # without JSON functions; PostgreSQL always binds an array).
    question = {"purpose": "social_matching", "network": "facebook", "emails": population}
    listed = post(client, token, "check-batch", question).json["results"]
    monkeypatch.setattr(state, "_SQLITE_JSON", False)
    assert state._key_form("sqlite", 2) == "expanding"
    assert post(client, token, "check-batch", question).json["results"] == listed


def test_a_consent_past_its_validity_is_expired_in_single_and_batch_checks(app, client, token):
    give(app, "demo", "lapsed@example.test", networks=["facebook"])
    give(app, "demo", "current@example.test", networks=["facebook"])
    with app.app_context():
        with db.transaction() as session:
            lapsed = session.scalars(select(Subject.id).where(
                Subject.email == "lapsed@example.test")).one()
            # Past its validity, before the lifecycle job has recorded the expiry.
            session.execute(update(ConsentState).where(ConsentState.subject_id == lapsed)
                            .values(expires_at=utcnow() - timedelta(seconds=1)))
            session.execute(update(ConsentState).where(ConsentState.subject_id != lapsed)
                            .values(expires_at=utcnow() + timedelta(minutes=5)))
    question = {"purpose": "social_matching", "network": "facebook"}
    results = post(client, token, "check-batch", {
        **question, "emails": ["lapsed@example.test", "current@example.test"]}).json["results"]
    for email, result in zip(["lapsed@example.test", "current@example.test"], results):
        single = post(client, token, "check", {**question, "email": email}).json
        single.pop("decision")
        assert result == single
    lapsed_answer, current_answer = results
    assert (lapsed_answer["status"], lapsed_answer["allowed"]) == ("expired", False)
    # An expiry's receipt is the proof of when to stop; no time of consent goes with it.
    assert lapsed_answer["receipt_id"] and lapsed_answer["given_at"] is None
    assert (current_answer["status"], current_answer["allowed"]) == ("given", True)
    assert current_answer["given_at"] and current_answer["notice_version"] == 1


def test_a_malformed_entry_is_named_by_its_index(client, token):
    question = {"purpose": "social_matching", "network": "facebook"}
    for entries, index in ((["a@b.test", "A@B.test", "not an address"], 2),
                           (["a@b.test", None], 1), (["x@" + "y" * 300 + ".test"], 0)):
        response = post(client, token, "check-batch", {**question, "emails": entries})
        assert response.status_code == 400
        assert response.json["error"] == "invalid_email"
        assert response.json["message"].startswith(f"emails[{index}]: ")


@pytest.mark.parametrize("body, status, code", [
    ({"purpose": "social_matching", "network": "facebook", "emails": []}, 400, "invalid_batch"),
    ({"purpose": "social_matching", "network": "facebook", "emails": "a@b.test"}, 400,
     "invalid_batch"),
    ({"purpose": "social_matching", "network": "facebook"}, 400, "invalid_subject"),
    ({"purpose": "social_matching", "network": "facebook", "emails": ["a@b.test"],
      "subject_ids": ["x"]}, 400, "invalid_subject"),
    ({"purpose": "social_matching", "network": "facebook", "emails": ["a@b.test", 7]}, 400,
     "invalid_email"),
    ({"purpose": "social_matching", "network": "facebook", "emails": ["a@b.test", "nope"]}, 400,
     "invalid_email"),
    ({"purpose": "social_matching", "network": "facebook", "subject_ids": ["x" * 41]}, 400,
     "invalid_subject"),
    ({"purpose": "social_matching", "emails": ["a@b.test"]}, 400, "invalid_network"),
    ({"purpose": "ads", "emails": ["a@b.test"]}, 400, "invalid_purpose"),
    ({"purpose": "newsletter", "emails": ["a@b.test"] * 10_001}, 413, "batch_too_large"),
])
def test_malformed_or_oversized_batches_get_a_clear_4xx_and_change_nothing(
        app, client, token, population, body, status, code):
    before = counts(app)
    for path in ("check-batch", "purge-audit"):
        response = post(client, token, path, body)
        assert (response.status_code, response.json["error"]) == (status, code)
    assert counts(app) == before


def test_batch_of_ten_thousand_is_accepted(client, token, population):
    emails = [f"p{i}@example.test" for i in range(10_000)]
    emails[5000] = "given@example.test"
    response = post(client, token, "check-batch", {"purpose": "social_matching",
                                                   "network": "facebook", "emails": emails})
    assert response.status_code == 200
    statuses = [r["status"] for r in response.json["results"]]
    assert statuses[5000] == "given" and statuses.count("unknown") == 9_999


def test_batch_needs_a_token_and_never_reveals_another_campaign(app, client, token, population):
    assert post(client, "forged", "check-batch", {"purpose": "newsletter",
                                                  "emails": ["a@b.test"]}).status_code == 401
    with app.app_context():
        with db.transaction() as session:
            from consent_widget.campaigns import create_campaign
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p",
                            origins=[], locale="fr", networks=["facebook"])
    give(app, "other", "only-other@example.test", networks=["facebook"])
    response = post(client, token, "check-batch", {"purpose": "social_matching",
                                                   "network": "facebook",
                                                   "emails": ["only-other@example.test"]})
    assert response.json["results"][0]["status"] == "unknown"


def test_purge_audit_returns_exactly_those_without_consent(client, token, app, campaign):
    holders = [f"m{i}@example.test" for i in range(12)]
    for email in holders:
        give(app, "demo", email, networks=["facebook"])
    withdrawn = {holders[i] for i in (1, 4, 5, 11)}
    for email in withdrawn:
        withdraw(app, email, "facebook")
    raw = json.dumps({"purpose": "social_matching", "network": "facebook",
                      "emails": holders}).encode()
    response = post(client, token, "purge-audit", data=raw, content_type="application/json")
    assert response.status_code == 200
    body = response.json
    assert {entry["email"] for entry in body["purge"]} == withdrawn
    assert [entry["index"] for entry in body["purge"]] == [1, 4, 5, 11]
    assert {entry["status"] for entry in body["purge"]} == {"withdrawn"}
    header, claims = decision_claims(client, body["statement"])
    assert header["typ"] == "purge-statement+jwt"
    assert claims["request_sha256"] == hashlib.sha256(raw).hexdigest()
    assert (claims["count"], claims["purge_count"]) == (12, 4)
    canonical = json.dumps(body["purge"], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
    assert claims["purge_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert "4 have no valid consent" in claims["statement"]

    by_id = post(client, token, "purge-audit", {
        "purpose": "social_matching", "network": "facebook",
        "subject_ids": [body["purge"][0]["subject_id"], "sub_nobody"]}).json
    assert [(e["subject_id"], e["status"]) for e in by_id["purge"]] == [
        (body["purge"][0]["subject_id"], "withdrawn"), ("sub_nobody", "unknown")]


def test_event_feed_pages_with_stable_cursors(app, client, token, campaign):
    give(app, "demo", "a@example.test", networks=["facebook"])
    give(app, "demo", "b@example.test", newsletter=True)
    withdraw(app, "a@example.test", "facebook")
    headers = {"Authorization": f"Bearer {token}"}
    seen, after = [], "0"
    while True:
        page = client.get(f"/api/v1/events?after={after}&limit=2", headers=headers).json
        seen += page["events"]
        if not page["has_more"]:
            break
        after = page["next"]
    assert [(e["type"], e["data"]["email"], e["data"]["network"]) for e in seen] == [
        ("consent.given", "a@example.test", "facebook"),
        ("consent.given", "b@example.test", None),
        ("consent.withdrawn", "a@example.test", "facebook")]
    assert all(e["data"]["receipt_id"] for e in seen)
    # A cursor means the same thing later, whatever has happened since.
    again = client.get(f"/api/v1/events?after={seen[0]['cursor']}", headers=headers).json
    assert [e["id"] for e in again["events"]] == [e["id"] for e in seen[1:]]
    end = client.get(f"/api/v1/events?after={page['next']}", headers=headers).json
    assert (end["events"], end["next"]) == ([], page["next"])


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "after=" + "9" * 19, "limit=0",
                                   "limit=1001", "limit=x", "after=%C2%B2"])
def test_event_feed_refuses_bad_cursors(client, token, query):
    response = client.get(f"/api/v1/events?{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_cursor", "invalid_limit")


@pytest.mark.parametrize("address", [
    "A.B@Example.ORG", " x@y.org ", "a..b@x.org", ".a@x.org", "a.@x.org", "a@x-.org",
    "a@-x.org", "a@x.o", "a@x.123", "a@x", "a@x_y.org", "a@localhost", "a@x.local",
    "a@xn--bcher-kva.ch", "a@ab--c.org", "a+tag@sub.example.org", "\u00e9@x.org",
    "a@b\u00fccher.ch", "x" * 65 + "@x.org", "a@" + "b" * 64 + ".org", '"q"@x.org',
    "a@b.c.museum", "a@x.test", "a@[127.0.0.1]", "", "@", "a@.org", "a b@x.org"])
def test_the_fast_path_normalises_exactly_as_email_validator(address):
    try:
        expected = emails._validated(address)
    except InvalidEmail:
        with pytest.raises(InvalidEmail):
            normalise(address)
    else:
        assert normalise(address) == expected
    fast = emails._plain(address)
    assert fast is None or fast == expected  # the fast path never decides otherwise


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 64, b"y" * 65, b"z" * 200])
def test_the_lookup_hash_is_hmac_sha256_of_the_address_with_its_local_part_lower_cased(key):
    for address in ["A.B@example.org", "\u00c9\u03a3@x.org", '"Q@x"@y.org', "a@xn--bcher-kva.ch"]:
        local, _, domain = address.rpartition("@")
        expected = hmac.new(key, f"{local.lower()}@{domain}".encode(), hashlib.sha256).hexdigest()
        assert emails.lookup_hasher(key)(address) == expected
        assert emails.lookup_hmac(key, address) == expected


def test_batch_results_are_the_canonical_json_of_the_single_answers():
    given_at = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
    views = [state.UNKNOWN, state.StateView("unknown", "sub_a"),
             state.StateView("given", "sub_b", "rcp-1", given_at, 3),
             state.StateView("given", "sub_c", "rcp-2", given_at.replace(microsecond=0), None),
             state.StateView("withdrawn", "sub_d", "rcp-3"),
             state.StateView("expired", "sub_e", "rcp-4"),
             state.StateView("requested", "sub_f"), state.StateView("refused", "sub_g"),
             # Whatever the text, it is escaped exactly as the json module escapes it.
             state.StateView("given", 'sub_"\\\n\u00e9\u2028\x00', "\U0001f600", given_at, 0)]
    for purpose, network in (("social_matching", "facebook"), ("newsletter", "")):
        expected = keys.canonical_json([api._answer(view, purpose, network) for view in views])
        assert api._answers_json(views, purpose, network) == expected


def test_a_single_answer_is_the_body_jsonify_makes_of_it(app):
    given_at = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
    views = [state.UNKNOWN, state.StateView("unknown", "sub_a"),
             state.StateView("given", "sub_b", "rcp-1", given_at, 3),
             state.StateView("withdrawn", "sub_d", "rcp-3"),
             # Whatever the text, it is escaped exactly as Flask's JSON provider escapes it.
             state.StateView("given", 'sub_"\\\n\u00e9\u2028\x00', "\U0001f600", given_at, 0)]
    with app.app_context():
        for view in views:
            for purpose, network in (("social_matching", "facebook"), ("newsletter", "")):
                decision = 'eyJ.a"\u00e9.b'
                expected = jsonify(dict(api._answer(view, purpose, network), decision=decision))
                assert api._answer_body(view, purpose, network, decision) \
                    == expected.get_data(as_text=True)


def test_a_single_decision_is_signed_over_the_claims_json_decision_claims_makes(app):
    """The check writes its decision's claims straight from the view; they must be the very
    bytes the generic path (a dict through receipts.decision_claims and canonical_json) makes,
    or a verifier would see claims that differ from what the check says it signed."""
    given_at = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
    views = [state.UNKNOWN, state.StateView("unknown", "sub_a"),
             state.StateView("given", "sub_b", "rcp-1", given_at, 3),
             state.StateView("withdrawn", "sub_d", "rcp-3"),
             state.StateView("given", 'sub_"\\\n\u00e9\u2028\x00', "\U0001f600", given_at, 0)]
    asked = [("email_sha256", "ab" * 32), ("subject_id_asked", 'sub_"\u00e9')]
    with app.app_context():
        for view, (name, value), (purpose, network), (iss, aud) in itertools.product(
                views, asked, (("social_matching", "facebook"), ("newsletter", "")),
                (("https://consent.example", "cw_client"), (None, None))):
            claims = {name: value, **api._answer(view, purpose, network), "iss": iss,
                      "aud": aud, "sub": view.subject_id, "campaign": "demo\u00e9"}
            expected = receipts.decision_claims(claims)
            written = api._decision_payload(
                view, purpose, network, (name, value), iss=iss, aud=aud,
                campaign="demo\u00e9", iat=expected["iat"], exp=expected["exp"],
                jti=expected["jti"])
            assert written == keys.canonical_json(expected), (view, name, purpose, iss)
