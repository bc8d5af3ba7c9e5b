"""Rate limits on the doors anyone can knock on: the signup, the email link pages, the token
endpoint and the platform API.

The limits are applied here, when the app is built, to the views of the other modules, so the
views stay unaware of them. Every key is a keyed hash: neither an email address nor an IP address
is ever written to the limit storage (Redis keys are readable by whoever runs Redis).

Each limit is a fixed window counted in :mod:`consent_widget.counters` with one call per limit
and request, which also says when the window ends; limits are parsed once, when the app is
built, with the ``limits`` library's notation (``60 per minute``, ``10/hour;100/day``). A
general rate-limit extension was measured to cost more per request than everything a consent
check must do (its reads and its signature), so the few things the product needs are done here.

Answers carry the IETF rate-limit headers in the form of draft-ietf-httpapi-ratelimit-headers-07:
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds until the window
resets) and ``RateLimit-Policy`` (``limit;w=window-seconds``); a 429 adds ``Retry-After``.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

from flask import current_app, g, jsonify, render_template, request
from flask_babel import gettext as _
from limits import RateLimitItem
from limits import parse_many as parse_limits
from sqlalchemy import bindparam, select
from werkzeug.exceptions import RequestEntityTooLarge, TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from . import counters, db, oauth, widget
from .emails import InvalidEmail, lookup_hmac, lookup_key, normalise
from .models import OAuthClient, OAuthToken
from .widget import MAX_BODY_BYTES

#: Endpoints of the email link pages; they share one budget per client address.
LINK_ENDPOINTS = ("links.confirm", "links.manage", "links.unsubscribe")
SIGNUP_ENDPOINT = "widget.submit"
TOKEN_ENDPOINT = "oauth.issue_token"
API_BLUEPRINT = "api"

_COUNTERS = "consent_limit_counters"
_KEY = "consent_limiter_key"
#: The start of every counter's key, so a Redis shared with other software keeps them apart.
PREFIX = "consent_widget"
#: The longest window a limit may count over, in seconds.
MAX_WINDOW = 366 * 24 * 3600


def _key() -> bytes:
    return current_app.extensions[_KEY]


def _derive_key(config) -> bytes:
    # Derived from the lookup key, so these hashes never equal the ones in the database.
    return hmac.new(lookup_key(config), b"consent_widget rate limit keys v1",
                    hashlib.sha256).digest()


def _hashed(kind: str, value: str) -> str:
    """A key for ``value`` that cannot be reversed without the app's lookup key."""
    return kind + ":" + hmac.new(_key(), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def client_address_key() -> str:
    """The key of limits per client: a keyed hash of the IP address the request came from."""
    return _hashed("ip", request.remote_addr or "unknown")


def submitted_email_key() -> str:
    """The key of limits per person: a keyed hash of the email submitted in the signup form.

    The form is read here, before the view, so the widget's own body limit is applied first:
    parsing up to the app-wide limit would bypass it. An oversized body gets a fixed key and is
    refused by the view.
    """
    request.max_content_length = MAX_BODY_BYTES
    try:
        submitted = request.form.get("email", "")
    except RequestEntityTooLarge:
        return "email:oversized"
    if not submitted.strip():
        return "email:none"
    try:
        address = normalise(submitted)
    except InvalidEmail:
        # Still one budget per spelling, so malformed variants cannot be sent without end.
        return _hashed("email", submitted.strip().casefold()[:320])
    # The lookup's normalisation, so every spelling of one mailbox shares one budget.
    return "email:" + lookup_hmac(_key(), address)[:32]


def api_client_key() -> str:
    """The key of API limits: the OAuth client that owns the bearer token.

    Keyed by client, not by token, so a client cannot multiply its budget by asking for more
    tokens. A request without a known token is limited per address instead; it is refused (401)
    by the view anyway.
    """
    digest = oauth.bearer_digest()
    if digest is not None:
        client_id = _client_of_token(digest)
        if client_id is not None:
            return "client:" + client_id
    return client_address_key()


#: token digest -> client id. A token belongs to one client for life, so an entry never goes
#: stale; unknown tokens are not remembered, so one issued a moment later is found.
_TOKEN_CLIENTS: dict[str, str] = {}
_TOKEN_CLIENTS_MAX = 10_000


#: The client of a token, read on the request's own reader, which its check then uses too.
_CLIENT_OF_TOKEN = (select(OAuthClient.client_id)
                    .join(OAuthToken, OAuthToken.client_pk == OAuthClient.id)
                    .where(OAuthToken.token_sha256 == bindparam("digest")))


def _client_of_token(digest: str) -> str | None:
    client_id = _TOKEN_CLIENTS.get(digest)
    if client_id is None:
        found = db.driver_rows(db.reader(), _CLIENT_OF_TOKEN, {"digest": digest})
        client_id = found[0].client_id if found else None
        if client_id is not None:
            if len(_TOKEN_CLIENTS) >= _TOKEN_CLIENTS_MAX:
                _TOKEN_CLIENTS.clear()
            _TOKEN_CLIENTS[digest] = client_id
    return client_id


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/oauth/")) or widget.wants_json()


@dataclass(frozen=True)
class Budget:
    """One setting's limits (``scope`` names its counters), each counted per ``key()``."""

    scope: str
    items: tuple[RateLimitItem, ...]
    key: Callable[[], str]

    @functools.cached_property
    def windows(self) -> tuple[tuple[RateLimitItem, int, str, tuple[str, str]], ...]:
        """Each limit with its window in seconds, the end of its counters' keys, and its
        ``RateLimit-Limit`` and ``RateLimit-Policy`` values, which never change."""
        return tuple((item, item.get_expiry(), f"{item.amount}/{item.get_expiry()}",
                      (str(item.amount), f"{item.amount};w={item.get_expiry()}"))
                     for item in self.items)


class Spent(NamedTuple):
    """Where a request stands in the tightest limit it was counted against (a named tuple:
    one is made per limit and request): the limit's fixed header values (``RateLimit-Limit``,
    ``RateLimit-Policy``), the requests left, and when its window ends."""

    fixed: tuple[str, str]
    remaining: int
    reset_at: float

    @property
    def breached(self) -> bool:
        """Whether the request went past the limit."""
        return self.remaining < 0


class RateLimited(TooManyRequests):
    """A request past one of its limits: answered 429 by :func:`_too_many_requests`."""


def hit(scope: str, key: str, item: RateLimitItem) -> tuple[int, float]:
    """Count one request of ``key`` against the limit ``item`` of ``scope`` in the app's
    counters (shared through Redis when configured): the count in the window, and when the
    window ends (seconds since the epoch)."""
    window = item.get_expiry()
    return current_app.extensions[_COUNTERS].hit(
        f"{PREFIX}:{scope}:{key}:{item.amount}/{window}", window)


def _count(budgets: tuple[Budget, ...]) -> None:
    """Count this request against each limit of ``budgets``, in order; raise
    :class:`RateLimited` at the first it goes past, counting no further.

    The tightest limit (fewest requests left) is kept on ``g`` for the headers. The counters'
    keys are those :func:`hit` makes, from each limit's window worked out once.
    """
    tally = current_app.extensions[_COUNTERS].hit
    tightest = None
    for budget in budgets:
        key = budget.key()
        for item, window, suffix, fixed in budget.windows:
            count, reset_at = tally(f"{PREFIX}:{budget.scope}:{key}:{suffix}", window)
            spent = Spent(fixed, item.amount - count, reset_at)
            if tightest is None or spent.remaining < tightest.remaining:
                tightest = spent
            if spent.breached:
                g.rate_limit = spent
                raise RateLimited()
    g.rate_limit = tightest


def _limited(view, budgets: tuple[Budget, ...]):
    @functools.wraps(view)
    def limited(*args, **kwargs):
        _count(budgets)
        return view(*args, **kwargs)
    return limited


def _seconds_to_reset(spent: Spent) -> int:
    return max(0, math.ceil(spent.reset_at - time.time()))


def _too_many_requests(exc: RateLimited):
    """429 as JSON under /api, /oauth and for the widget's script; a translated page elsewhere."""
    message = _("Too many requests in a short time. Please wait a moment and try again.")
    if not _wants_json():
        return render_template("error.html", status=429, title=_("Too many requests"),
                               message=message), 429
    if request.endpoint == SIGNUP_ENDPOINT:
        # The widget's script shows ``errors``; the API's shape is there too for other clients.
        response = jsonify(ok=False, error="rate_limited", message=message,
                           errors={"form": [message]})
    else:
        response = jsonify(error="rate_limited", message=message)
    response.status_code = 429
    return response


def _ratelimit_headers(response):
    """Add the IETF rate-limit headers of the tightest limit counted for this request."""
    spent = g.get("rate_limit")
    if spent is None:
        return response
    reset, remaining = _seconds_to_reset(spent), max(0, spent.remaining)
    if spent.breached:
        reset = max(1, reset)
    limit, policy = spent.fixed
    # Added, not set: no other part of the app writes these headers, and setting one looks
    # for an earlier value to replace.
    add = response.headers.add
    add("RateLimit-Limit", limit)
    add("RateLimit-Remaining", str(remaining))
    add("RateLimit-Reset", str(reset))
    add("RateLimit-Policy", policy)
    if response.status_code == 429:
        add("Retry-After", str(reset))
    return response


def _budget(config, setting: str, scope: str, key: Callable[[], str]) -> Budget:
    try:
        items = tuple(parse_limits(str(config[setting])))
    except ValueError:
        items = ()
    if not items:  # a limit that cannot be read would be no limit: refuse to start instead
        raise ValueError(f"{setting} is not a rate limit such as '60 per minute': "
                         f"{config[setting]!r}")
    if any(item.get_expiry() > MAX_WINDOW for item in items):
        # Redis keeps a window in milliseconds within 64 bits; a limit over years is a typo.
        raise ValueError(f"{setting} has a window longer than a year: {config[setting]!r}")
    return Budget(scope, items, key)


def _limit_endpoint(app, endpoint: str, *budgets: Budget) -> None:
    """Count requests to ``endpoint`` against ``budgets``; a missing endpoint is a wiring
    error."""
    app.view_functions[endpoint] = _limited(app.view_functions[endpoint], budgets)


def init_app(app) -> None:
    """Count the app's requests against the configured limits.

    Call after every blueprint is registered: the views must exist to be wrapped. Behind
    ``TRUSTED_PROXIES`` reverse proxies the client address is read from ``X-Forwarded-For``, or
    every supporter would share the proxy's budget. Limits fail open: if Redis is unreachable,
    they are counted in this process's memory rather than turn signups and withdrawals away
    with errors.
    """
    config = app.config
    budgets = {name: _budget(config, name, scope, key) for name, scope, key in (
        ("RATELIMIT_SIGNUP_PER_IP", "signup-ip", client_address_key),
        ("RATELIMIT_SIGNUP_PER_EMAIL", "signup-email", submitted_email_key),
        ("RATELIMIT_LINKS", "links", client_address_key),
        ("RATELIMIT_TOKEN", "token", client_address_key),
        ("RATELIMIT_API", "api", api_client_key))}
    app.extensions[_KEY] = _derive_key(config)  # once, not on every request
    app.extensions[_COUNTERS] = counters.from_url(config["RATELIMIT_STORAGE_URL"])
    proxies = int(config["TRUSTED_PROXIES"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)

    # Per address first: a flood from one address is refused before its form is even read.
    _limit_endpoint(app, SIGNUP_ENDPOINT, budgets["RATELIMIT_SIGNUP_PER_IP"],
                    budgets["RATELIMIT_SIGNUP_PER_EMAIL"])
    for endpoint in LINK_ENDPOINTS:  # one scope: the three pages share one budget
        _limit_endpoint(app, endpoint, budgets["RATELIMIT_LINKS"])
    _limit_endpoint(app, TOKEN_ENDPOINT, budgets["RATELIMIT_TOKEN"])
    for endpoint in [name for name in app.view_functions
                     if name.startswith(API_BLUEPRINT + ".")]:
        _limit_endpoint(app, endpoint, budgets["RATELIMIT_API"])

    app.register_error_handler(RateLimited, _too_many_requests)
    app.after_request(_ratelimit_headers)
