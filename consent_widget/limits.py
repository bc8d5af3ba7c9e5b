"""Rate limits (Flask-Limiter) on the doors anyone can knock on: the signup, the email link pages,
the token endpoint and the platform API.

The limits are applied here, when the app is built, to the views of the other modules, so the
views stay unaware of them. Every key is a keyed hash: neither an email address nor an IP address
is ever written to the limit storage (Redis keys are readable by whoever runs Redis).

Answers carry the IETF rate-limit headers in the form of draft-ietf-httpapi-ratelimit-headers-07:
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds until the window
resets) and ``RateLimit-Policy`` (``limit;w=window-seconds``); a 429 adds ``Retry-After``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from flask import current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many as parse_limits
from limits.strategies import STRATEGIES
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from . import counters, db, widget
from .emails import InvalidEmail, lookup_hmac, lookup_key, normalise
from .models import OAuthClient, OAuthToken
from .widget import MAX_BODY_BYTES

#: Endpoints of the email link pages; they share one budget per client address.
LINK_ENDPOINTS = ("links.confirm", "links.manage", "links.unsubscribe")
SIGNUP_ENDPOINT = "widget.submit"
TOKEN_ENDPOINT = "oauth.issue_token"
API_BLUEPRINT = "api"

_EXTENSION = "consent_limiter"
_KEY = "consent_limiter_key"
log = logging.getLogger(__name__)
#: Flask-Limiter's strategy: one counter per key and window, the cheapest to keep and share.
STRATEGY = "fixed-window"
#: The settings that hold a limit, checked when the app is built.
LIMIT_SETTINGS = ("RATELIMIT_SIGNUP_PER_IP", "RATELIMIT_SIGNUP_PER_EMAIL", "RATELIMIT_LINKS",
                  "RATELIMIT_TOKEN", "RATELIMIT_API")


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
    scheme, _sp, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and 0 < len(token) <= 200:
        client_id = _client_of_token(hashlib.sha256(token.encode("utf-8")).hexdigest())
        if client_id is not None:
            return "client:" + client_id
    return client_address_key()


#: token digest -> client id. A token belongs to one client for life, so an entry never goes
#: stale; unknown tokens are not remembered, so one issued a moment later is found.
_TOKEN_CLIENTS: dict[str, str] = {}
_TOKEN_CLIENTS_MAX = 10_000


def _client_of_token(digest: str) -> str | None:
    client_id = _TOKEN_CLIENTS.get(digest)
    if client_id is None:
        client_id = db.session().scalars(
            select(OAuthClient.client_id).join(OAuthToken, OAuthToken.client_pk == OAuthClient.id)
            .where(OAuthToken.token_sha256 == digest)).first()
        if client_id is not None:
            if len(_TOKEN_CLIENTS) >= _TOKEN_CLIENTS_MAX:
                _TOKEN_CLIENTS.clear()
            _TOKEN_CLIENTS[digest] = client_id
    return client_id


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/oauth/")) or widget.wants_json()


def _seconds_to_reset(limit) -> int:
    return max(0, math.ceil(limit.reset_at - time.time()))


def _too_many_requests(exc: RateLimitExceeded):
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
    """Add the IETF rate-limit headers of the tightest limit evaluated for this request."""
    limiter = current_app.extensions.get(_EXTENSION)
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return response
    try:
        reset, remaining = _seconds_to_reset(current), current.remaining
    except Exception:  # storage lost since the check: the headers are advice, the answer stands
        log.warning("rate-limit headers left out: the limit storage did not answer")
        return response
    if current.breached:
        reset, remaining = max(1, reset), 0
    response.headers["RateLimit-Limit"] = str(current.limit.amount)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(reset)
    response.headers["RateLimit-Policy"] = f"{current.limit.amount};w={current.limit.get_expiry()}"
    if response.status_code == 429:
        response.headers["Retry-After"] = str(reset)
    return response


def _count_in_process_while_storage_is_down(limiter: Limiter) -> None:
    """Make the limiter's fallback for an unreachable Redis count in this process's counters.

    Flask-Limiter builds that fallback on ``limits``' memory storage, whose sweeping thread
    (see :mod:`consent_widget.counters`) would then cost up to half a core per worker for as
    long as Redis is down, on the evening it is most needed. It has no setting for the
    fallback's storage, so the two attributes it keeps it in are replaced; a test fails if a
    later version stops using them. (The memory storage it built meanwhile is dropped; its
    constructor has already run its sweep once, 10 ms after the app was built.)
    """
    if limiter._fallback_limiter is not None:
        limiter._fallback_storage = counters.ProcessCounters(f"{counters.SCHEME}://")
        limiter._fallback_limiter = STRATEGIES[STRATEGY](limiter._fallback_storage)


def _limit_endpoint(app, endpoint: str, decorator) -> None:
    """Wrap the view of ``endpoint`` in ``decorator``; a missing endpoint is a wiring error."""
    app.view_functions[endpoint] = decorator(app.view_functions[endpoint])


def init_app(app) -> None:
    """Create the app's limiter and apply the configured limits to the views.

    Call after every blueprint is registered: the views must exist to be wrapped. Behind
    ``TRUSTED_PROXIES`` reverse proxies the client address is read from ``X-Forwarded-For``, or
    every supporter would share the proxy's budget. The limiter fails open: if Redis is
    unreachable, limits fall back to this process's memory rather than turn signups and
    withdrawals away with errors.
    """
    for name in LIMIT_SETTINGS:
        # Flask-Limiter would only log a malformed limit and apply none: refuse to start instead.
        try:
            parse_limits(str(app.config[name]))
        except ValueError:
            raise ValueError(f"{name} is not a rate limit such as '60 per minute': "
                             f"{app.config[name]!r}") from None
    app.extensions[_KEY] = _derive_key(app.config)  # once, not on every request
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    storage = app.config["RATELIMIT_STORAGE_URL"]
    if storage == "memory://":
        # This process's counters, without the thread limits' own memory storage runs.
        storage = f"{counters.SCHEME}://"
    # A Redis that stops answering must cost a request a second at most, not hang it.
    options = {"socket_connect_timeout": 1, "socket_timeout": 1} if storage.startswith(
        ("redis://", "rediss://", "redis+unix://")) else {}
    limiter = Limiter(
        client_address_key, app=app, storage_uri=storage, storage_options=options,
        strategy=STRATEGY, headers_enabled=False, key_prefix="consent_widget",
        in_memory_fallback_enabled=True, swallow_errors=True)
    _count_in_process_while_storage_is_down(limiter)
    app.extensions[_EXTENSION] = limiter
    config = app.config

    # Two limits on one view: Flask-Limiter checks both from the innermost wrapper.
    _limit_endpoint(app, SIGNUP_ENDPOINT, limiter.limit(
        config["RATELIMIT_SIGNUP_PER_IP"], key_func=client_address_key, scope="signup-ip"))
    _limit_endpoint(app, SIGNUP_ENDPOINT, limiter.limit(
        config["RATELIMIT_SIGNUP_PER_EMAIL"], key_func=submitted_email_key,
        scope="signup-email"))
    links = limiter.shared_limit(config["RATELIMIT_LINKS"], scope="links",
                                 key_func=client_address_key)
    for endpoint in LINK_ENDPOINTS:
        _limit_endpoint(app, endpoint, links)
    _limit_endpoint(app, TOKEN_ENDPOINT, limiter.limit(
        config["RATELIMIT_TOKEN"], key_func=client_address_key, scope="token"))
    # On the blueprint rather than on each view: checked once, before the view, which costs
    # half of a decorator's bookkeeping on the API's hottest path.
    limiter.shared_limit(config["RATELIMIT_API"], scope="api",
                         key_func=api_client_key)(app.blueprints[API_BLUEPRINT])

    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    app.after_request(_ratelimit_headers)
