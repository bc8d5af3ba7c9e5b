"""Rate limits: per address and per email on signups, per address on links and the token
endpoint, per OAuth client on the API; IETF headers; 429 in the right shape; and one budget
shared by two app instances through a real Redis server."""
from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
from limits.storage import MemoryStorage

from consent_widget import create_app
from consent_widget.cli import main
from consent_widget.counters import ProcessCounters, RedisCounters
from helpers import widget_form

REDIS_URL = os.environ.get("CONSENT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def create_client(app) -> dict:
    result = app.test_cli_runner().invoke(main, ["client", "create", "demo"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def access_token(client, credentials: dict) -> str:
    raw = f"{credentials['client_id']}:{credentials['client_secret']}".encode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
    assert response.status_code == 200, response.json
    return response.json["access_token"]


def check(client, token: str):
    return client.post("/api/v1/consents/check", headers={"Authorization": f"Bearer {token}"},
                       json={"email": "ana@example.test", "purpose": "newsletter"})


# --- signup --------------------------------------------------------------------------------------

SIGNUP_LIMITS = {"RATELIMIT_SIGNUP_PER_IP": "3 per minute",
                 "RATELIMIT_SIGNUP_PER_EMAIL": "2 per hour"}


def test_signups_from_one_address_are_limited_with_a_translated_page(campaign_app_factory):
    _app, client = campaign_app_factory(**SIGNUP_LIMITS)
    forms = [widget_form(client, f"person{n}@example.test") for n in range(4)]
    answers = [client.post("/w/demo", data=form) for form in forms]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.mimetype == "text/html"
    page = refused.get_data(as_text=True)
    assert "Trop de requêtes" in page  # the campaign's language
    assert int(refused.headers["Retry-After"]) >= 1
    # Another address still gets through.
    other = client.post("/w/demo", data=widget_form(client, "person9@example.test"),
                        environ_base={"REMOTE_ADDR": "192.0.2.77"})
    assert other.status_code == 200


def test_signups_of_one_email_are_limited_whatever_the_address_or_spelling(campaign_app_factory):
    _app, client = campaign_app_factory(**SIGNUP_LIMITS)
    spellings = ["Ana@Example.test", "  ana@EXAMPLE.TEST ", "ana@example.test"]
    answers = [client.post("/w/demo", data=widget_form(client, email),
                           environ_base={"REMOTE_ADDR": f"192.0.2.{n + 10}"})
               for n, email in enumerate(spellings)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    other = client.post("/w/demo", data=widget_form(client, "bruno@example.test"),
                        environ_base={"REMOTE_ADDR": "192.0.2.99"})
    assert other.status_code == 200


def test_the_widgets_script_gets_json_it_can_show(campaign_app_factory):
    _app, client = campaign_app_factory(**SIGNUP_LIMITS)
    for _ in range(2):
        client.post("/w/demo", data=widget_form(client, "ana@example.test"),
                    headers={"Accept": "application/json"})
    refused = client.post("/w/demo", data=widget_form(client, "ana@example.test"),
                          headers={"Accept": "application/json", "Origin": "null"})
    assert refused.status_code == 429
    body = refused.json
    assert body["ok"] is False and body["error"] == "rate_limited"
    assert body["errors"]["form"] == [body["message"]]
    assert refused.headers["Access-Control-Allow-Origin"] == "null"


def test_an_oversized_signup_is_still_refused_by_the_widget_not_read_by_the_limiter(campaign_app_factory):
    _app, client = campaign_app_factory(**SIGNUP_LIMITS)
    response = client.post("/w/demo", data={"email": "a@example.test", "x": "y" * 40_000},
                           headers={"Accept": "application/json"})
    assert response.status_code == 413


# --- email links and the token endpoint ---------------------------------------------------------

def test_link_pages_are_limited_per_address_across_confirm_manage_and_unsubscribe(
        campaign_app_factory):
    app, client = campaign_app_factory(RATELIMIT_LINKS="2 per minute")
    assert client.get("/w/demo/confirm/not-a-token").status_code == 404
    assert client.post("/w/demo/manage/not-a-token").status_code == 404
    refused = client.get("/w/demo/unsubscribe/not-a-token")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert "Retry-After" in refused.headers
    assert client.get("/w/demo/confirm/not-a-token",
                      environ_base={"REMOTE_ADDR": "192.0.2.5"}).status_code == 404


def test_the_token_endpoint_is_limited_per_address_in_json(campaign_app_factory):
    app, client = campaign_app_factory(RATELIMIT_TOKEN="2 per minute")
    for _ in range(2):
        assert client.post("/oauth/token", data={"grant_type": "client_credentials"}
                           ).status_code == 401
    refused = client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert refused.status_code == 429
    assert refused.json["error"] == "rate_limited" and refused.json["message"]
    assert int(refused.headers["Retry-After"]) >= 1


# --- the API, per client -------------------------------------------------------------------------

def test_the_api_budget_belongs_to_the_client_not_the_token(campaign_app_factory):
    app, client = campaign_app_factory(RATELIMIT_API="3 per minute")
    first = create_client(app)
    tokens = [access_token(client, first), access_token(client, first)]
    remaining = [check(client, tokens[n % 2]).headers["RateLimit-Remaining"] for n in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = check(client, tokens[1])
    assert refused.status_code == 429
    assert refused.json["error"] == "rate_limited"
    # Another client of the same campaign, from the same address, has its own budget.
    second = create_client(app)
    assert check(client, access_token(client, second)).status_code == 200


def test_answers_carry_the_ietf_headers_and_retry_after_only_on_429(campaign_app_factory):
    app, client = campaign_app_factory(RATELIMIT_API="2 per minute")
    token = access_token(client, create_client(app))
    allowed = check(client, token)
    assert allowed.status_code == 200
    assert allowed.headers["RateLimit-Limit"] == "2"
    assert allowed.headers["RateLimit-Remaining"] == "1"
    assert 0 <= int(allowed.headers["RateLimit-Reset"]) <= 61
    assert allowed.headers["RateLimit-Policy"] == "2;w=60"
    assert "Retry-After" not in allowed.headers
    check(client, token)
    refused = check(client, token)
    assert refused.status_code == 429
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]


def test_pages_without_a_limit_carry_no_ratelimit_headers(client, campaign):
    response = client.get("/w/demo")
    assert response.status_code == 200
    assert not any(name in response.headers for name in HEADERS)


@pytest.mark.parametrize("setting", ["lots", "1/second;", "", "1 per 1000000000 years"])
def test_a_malformed_limit_setting_stops_the_app_at_start(app_config, setting):
    with pytest.raises(ValueError, match="RATELIMIT_API"):
        create_app(dict(app_config, RATELIMIT_API=setting))


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(campaign_app_factory):
    app, client = campaign_app_factory(RATELIMIT_TOKEN="1 per minute", TRUSTED_PROXIES=1)
    ask = lambda forwarded: client.post(  # noqa: E731
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers={"X-Forwarded-For": forwarded}).status_code
    assert ask("198.51.100.1") == 401
    assert ask("198.51.100.2") == 401
    assert ask("198.51.100.1") == 429


def test_unreachable_redis_falls_back_to_in_process_counters(campaign_app_factory, monkeypatch,
                                                             caplog):
    # Limits still apply rather than fail, counted in the project's own counters: limits' memory
    # storage would sweep every counter from a thread every 10 ms for as long as Redis is down.
    counted = {"limits' memory storage": 0, "process counters": 0, "redis": 0}

    def spy(storage_class, method, name):
        original = getattr(storage_class, method)

        def counting(self, *args, **kwargs):
            counted[name] += 1
            return original(self, *args, **kwargs)
        monkeypatch.setattr(storage_class, method, counting)

    spy(MemoryStorage, "incr", "limits' memory storage")
    spy(ProcessCounters, "hit", "process counters")
    spy(RedisCounters, "hit", "redis")
    # Port 1 on loopback refuses at once: Redis "down".
    app, client = campaign_app_factory(RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0",
                                       RATELIMIT_TOKEN="2 per minute")
    statuses = [client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    # Redis was tried once, then left alone for a while rather than cost every request a try.
    assert counted == {"limits' memory storage": 0, "process counters": 3, "redis": 1}
    assert "rate-limit storage unreachable" in caplog.text


# --- several instances, one Redis ------------------------------------------------------------------

@pytest.fixture
def redis_url():
    """The Redis server of the tests; skipped when there is none, except on CI, where it fails."""
    import redis
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required on CI and is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis server at {REDIS_URL}")
    return REDIS_URL


def test_two_instances_share_one_budget_through_redis(redis_url, app_config, app, campaign):
    # A fresh lookup key makes every key of this run new, so runs never share counters.
    settings = dict(app_config, RATELIMIT_STORAGE_URL=redis_url, RATELIMIT_API="3 per minute",
                    RATELIMIT_SIGNUP_PER_EMAIL="1 per hour", LOOKUP_KEY=secrets.token_hex(16))
    first, second = create_app(settings), create_app(settings)
    one, two = first.test_client(), second.test_client()
    token = access_token(one, create_client(first))
    answers = [check(c, token) for c in (one, two, one)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    # One window, counted in Redis: the headers go down across the two instances, and both
    # say the same window ends at the same time.
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["RateLimit-Policy"] for a in answers} == {"3;w=60"}
    resets = [int(a.headers["RateLimit-Reset"]) for a in answers]
    assert max(resets) - min(resets) <= 1 and 0 < resets[0] <= 60
    refused = check(two, token)
    assert refused.status_code == 429
    assert refused.json["error"] == "rate_limited"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]

    email = f"shared-{secrets.token_hex(4)}@example.test"
    assert one.post("/w/demo", data=widget_form(one, email)).status_code == 200
    assert two.post("/w/demo", data=widget_form(two, email),
                    environ_base={"REMOTE_ADDR": "192.0.2.200"}).status_code == 429


def test_redis_keys_hold_neither_an_email_nor_an_address(redis_url, app_config, app, campaign):
    import redis
    prefix = secrets.token_hex(8)
    settings = dict(app_config, RATELIMIT_STORAGE_URL=redis_url, LOOKUP_KEY=prefix)
    instance = create_app(settings)
    client = instance.test_client()
    email = f"keys-{prefix}@example.test"
    assert client.post("/w/demo", data=widget_form(client, email),
                       environ_base={"REMOTE_ADDR": "203.0.113.45"}).status_code == 200
    keys = [key.decode() for key in
            redis.Redis.from_url(redis_url).scan_iter(match="*consent_widget*", count=1000)]
    assert any("signup-email" in key for key in keys)
    assert not [key for key in keys if "@" in key or "203.0.113.45" in key or prefix in key]


@pytest.fixture
def campaign_app_factory(app_config, app, campaign):
    """Build another app on the same database, with the ``demo`` campaign, and these settings."""
    def build(**settings):
        instance = create_app(dict(app_config, **settings))
        return instance, instance.test_client()
    return build
