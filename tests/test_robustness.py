"""No input gets a 5xx or a traceback: every route is hit with junk and must answer below 500."""
from __future__ import annotations

import re

import pytest

from consent_widget import db, keys

JUNK_SEGMENTS = ["x", "%00", "..%2F..%2Fetc", "a" * 3000, "ü€", "demo", "%ff%fe"]
JUNK_BODIES = [
    {"data": b"\x00\xff\xfe garbage", "content_type": "application/octet-stream"},
    {"data": "{not json", "content_type": "application/json"},
    {"data": "[" * 5000, "content_type": "application/json"},
    {"data": "email=%ZZ&newsletter=%00&social_matching=" + "a" * 500,
     "content_type": "application/x-www-form-urlencoded"},
    {"data": "x" * 200_000, "content_type": "application/x-www-form-urlencoded"},
    {"json": {"email": {"$ne": None}, "purpose": ["newsletter"], "network": 1}},
]
JUNK_HEADERS = [
    {},
    {"Authorization": "Bearer \x00"},
    {"Authorization": "Basic %%%"},
    {"Accept-Language": "zz;q=abc, ,;;"},
    {"Origin": "null", "Accept": "application/json"},
]


def paths(app):
    """Every route of the app with its arguments filled with junk, and the methods it takes."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for segment in JUNK_SEGMENTS:
            path = re.sub(r"<(?:[^:>]+:)?[^>]+>", segment, rule.rule)
            yield path, sorted(rule.methods - {"HEAD"})


def test_no_route_answers_5xx_to_junk(app, client, campaign):
    with app.app_context(), db.transaction() as session:
        keys.active_key(session)  # a ready app: /readyz's 503 says "not ready", not "bad input"
    failures = []
    for path, methods in paths(app):
        for method in methods:
            for body in JUNK_BODIES if method in ("POST", "PUT", "PATCH") else [{}]:
                for headers in JUNK_HEADERS:
                    response = client.open(path, method=method, headers=headers,
                                           query_string={"lang": "\x00", "url": "%", "v": "["},
                                           **body)
                    if response.status_code >= 500:
                        failures.append((method, path[:80], response.status_code))
    assert failures == []


@pytest.mark.parametrize("path, status", [("/w/demo", 413), ("/oauth/token", 413),
                                          ("/api/v1/consents/check", 401)])
def test_a_huge_body_is_refused_without_being_read(client, campaign, path, status):
    # The API checks the bearer token before it reads anything.
    response = client.post(path, data=b"x" * (3 * 1024 * 1024),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == status


def test_api_bodies_that_could_exhaust_the_parser_are_a_clear_400(client, runner, campaign):
    from conftest import run_json
    platform = run_json(runner, "client", "create", "demo")
    token = client.post("/oauth/token", data={"grant_type": "client_credentials",
                                              "client_id": platform["client_id"],
                                              "client_secret": platform["client_secret"]}
                        ).json["access_token"]
    for body in ("[" * 5000 + "]" * 5000, '{"a":' * 2000 + "1" + "}" * 2000):
        response = client.post("/api/v1/consents/check", data=body,
                               content_type="application/json",
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400 and response.json["error"] == "invalid_json"


def test_basic_credentials_that_are_not_utf8_are_refused_as_invalid_client(client, campaign):
    import base64
    raw = base64.b64encode(b"\xff:\xfe").decode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {raw}"})
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_no_answer_sets_a_cookie_and_no_session_can_be_written(app, client, campaign):
    from flask import session
    answers = [client.get("/w/demo"), client.post("/w/demo", data={"email": "x"}),
               client.get("/healthz"), client.get("/.well-known/jwks.json")]
    assert all(answer.status_code < 500 for answer in answers)
    assert not any("Set-Cookie" in answer.headers for answer in answers)
    with app.test_request_context("/w/demo"):
        with pytest.raises(RuntimeError):
            session["anything"] = "written by mistake"
