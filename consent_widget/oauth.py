"""OAuth 2.0 for platforms: Authlib's authorization server with the client credentials grant
(RFC 6749 §4.4) at ``/oauth/token``, and the resource protector of the API.

A client belongs to one campaign and so does every token issued to it; the API reads the
campaign from the token, never from the request. Client secrets and access tokens are stored as
SHA-256 digests: both are 256-bit random strings, so a fast hash is as safe as a slow one and
keeps token checks cheap, and a copy of the database yields no usable credential.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.integrations.flask_oauth2.signals import token_authenticated
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from flask import Blueprint, abort, current_app, g, jsonify, request
from sqlalchemy import bindparam, select, update

from . import db
from .errors import api_error_response
from .models import Campaign, OAuthClient, OAuthRevocations, OAuthToken, utcnow

#: Scopes a platform client may hold; all are granted by default.
SCOPES = ("consents:check", "events:read", "receipts:read")

bp = Blueprint("oauth", __name__)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class PlatformClient(ClientMixin):
    """Authlib's view of a stored :class:`OAuthClient`."""

    def __init__(self, row: OAuthClient):
        self.row = row

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        allowed = self.row.scopes.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return hmac.compare_digest(self.row.secret_hash, _sha256(client_secret or ""))

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"


class PlatformToken(TokenMixin):
    """Authlib's view of a stored :class:`OAuthToken`, read with its client and campaign.

    Built from one plain row (see :data:`_TOKEN_QUERY`), not ORM objects: every API request
    authenticates, so this read is on the hottest path of the service.
    """

    def __init__(self, row):
        self.row = row

    @property
    def campaign_id(self) -> int:
        """The one campaign this token may see."""
        return self.row.campaign_id

    @property
    def campaign_slug(self) -> str:
        """The slug of that campaign, which signed answers name."""
        return self.row.campaign_slug

    @property
    def client_id(self) -> str:
        """The public id of the client the token was issued to."""
        return self.row.client_id

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.row.scope

    def get_expires_in(self):
        return int((self.row.expires_at - self.row.issued_at).total_seconds())

    def is_expired(self):
        return self.row.expires_at <= utcnow()

    def is_revoked(self):
        return self.row.revoked_at is not None or self.row.client_revoked_at is not None

    def get_user(self):
        return None

    def get_client(self):
        return _query_client(self.client_id)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """The client credentials grant, with HTTP Basic and form-post client authentication."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


#: The revocation counter, bumped by triggers whenever a token or client changes or goes.
_COUNTER = select(OAuthRevocations.counter).where(OAuthRevocations.id == 1).scalar_subquery()

#: A token with its client's revocation, its campaign's slug and the counter it was read at, in
#: one statement built once (one snapshot, so no revocation can fall between the two reads).
_TOKEN_QUERY = (
    select(OAuthToken.campaign_id, OAuthToken.scope, OAuthToken.issued_at, OAuthToken.expires_at,
           OAuthToken.revoked_at, OAuthClient.client_id,
           OAuthClient.revoked_at.label("client_revoked_at"),
           Campaign.slug.label("campaign_slug"), _COUNTER.label("counter"))
    .join(OAuthClient, OAuthClient.id == OAuthToken.client_pk)
    .join(Campaign, Campaign.id == OAuthToken.campaign_id)
    .where(OAuthToken.token_sha256 == bindparam("digest")))

#: The counter alone: one primary-key read of a one-row table.
_COUNTER_QUERY = select(OAuthRevocations.counter).where(OAuthRevocations.id == 1)


class TokenCache:
    """This process's tokens by digest, trusted only while the revocation counter is unchanged.

    Every entry was read at the counter value the cache holds; when a check reads another value,
    some token or client somewhere changed, so the whole cache is dropped and the token read
    again. A revocation made by any process is therefore seen by the next request of every
    process, while an unchanged database costs one primary-key read instead of a three-table
    join. Expiry needs no counter: the cached expiry is compared with the clock on every use.
    """

    MAX_ENTRIES = 10_000

    def __init__(self):
        # One tuple swapped whole, so threads never see a counter with another counter's rows.
        self._state: tuple[int | None, dict] = (None, {})

    def lookup(self, connection, digest: str):
        """The token row for ``digest`` (or None), read from memory when still valid."""
        counter, rows = self._state
        if rows:
            found = db.driver_rows(connection, _COUNTER_QUERY)
            current = found[0].counter if found else None
            if current == counter:
                row = rows.get(digest)
                if row is not None:
                    return row
            else:
                counter, rows = None, {}
        found = db.driver_rows(connection, _TOKEN_QUERY, {"digest": digest})
        row = found[0] if found else None
        if row is None or row.counter is None:
            # Unknown tokens are not remembered, so one issued a moment later is found; without
            # its counter row (a database emptied by hand) nothing can be trusted, so nothing is kept.
            return row
        if row.counter != counter or len(rows) >= self.MAX_ENTRIES:
            rows = {}  # read at another counter, or full: start afresh rather than evict one by one
        rows[digest] = row
        self._state = (row.counter, rows)
        return row

    def peek(self, digest: str):
        """The cached row for ``digest`` and the counter it was read at, without reading the
        database; None if it is not cached.

        The row may be stale: the caller must read the counter in the same statement as the
        rest of its work, and trust the row only if that counter is the one returned here
        (:func:`cached_token`). One tuple is read, so the pair always belongs together.
        """
        counter, rows = self._state
        row = rows.get(digest)
        return None if row is None else (row, counter)

    def clear(self) -> None:
        """Forget every token (tests, or after restoring a database)."""
        self._state = (None, {})


class CampaignTokenValidator(BearerTokenValidator):
    """Finds a bearer token by its digest, through the app's :class:`TokenCache`."""

    def authenticate_token(self, token_string):
        if not token_string or len(token_string) > 200:
            return None
        cache = current_app.extensions["consent_token_cache"]
        row = cache.lookup(db.reader(), _sha256(token_string))
        return PlatformToken(row) if row is not None else None


class _BearerRequest:
    """All that the bearer token checks read of a request: its headers."""

    __slots__ = ("headers",)

    def __init__(self, headers):
        self.headers = headers


class CampaignResourceProtector(ResourceProtector):
    """Answers token errors in the API's error shape, keeping ``WWW-Authenticate``."""

    def acquire_token(self, scopes=None, **kwargs):
        """Authlib's check of the bearer token (its header parsing, validator, errors and
        signal), given only the request's headers.

        Authlib first copies the whole request into an OAuth2 request object, its JSON body
        parsed; the bearer checks read only the ``Authorization`` header, and on the check, the
        API's hottest path, that copy cost more than finding the token.
        """
        token = self.validate_request(scopes=[scopes] if isinstance(scopes, str) else scopes,
                                      request=_BearerRequest(request.headers))
        token_authenticated.send(self, token=token)
        g.authlib_server_oauth2_token = token
        return token

    def authenticate(self, scope: str) -> PlatformToken:
        """The request's token, checked for ``scope`` as the decorator checks it; a refusal
        ends the request with its error response (401 or 403), as under the decorator."""
        try:
            return self.acquire_token(scope)
        except OAuth2Error as error:
            self.raise_error_response(error)

    def raise_error_response(self, error):
        response = api_error_response(error.status_code, error.error,
                                      error.description or "A valid bearer token is required.")
        for name, value in error.get_headers():
            if name.lower() == "www-authenticate":
                response.headers[name] = value
        abort(response)


def _query_client(client_id):
    if not client_id or len(client_id) > 64:
        return None
    row = db.session().scalars(
        select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    return PlatformClient(row)


def _save_token(token, request):
    client = request.client.row
    now = utcnow()
    with db.transaction() as session:
        session.add(OAuthToken(
            token_sha256=_sha256(token["access_token"]), client_pk=client.id,
            campaign_id=client.campaign_id, scope=token.get("scope", ""), issued_at=now,
            expires_at=now + timedelta(seconds=token["expires_in"])))


require_oauth = CampaignResourceProtector()
require_oauth.register_token_validator(CampaignTokenValidator())


def bearer_digest() -> str | None:
    """The SHA-256 of this request's bearer token (the form tokens are stored and cached in),
    or None without a plausible one; worked out once per request, for the rate limit's key and
    the cached token alike."""
    if "bearer_digest" not in g:
        # The header straight from the WSGI environ, where werkzeug's headers object reads it,
        # without making that object on every check.
        scheme, _sp, token_string = request.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        g.bearer_digest = _sha256(token_string) \
            if scheme.lower() == "bearer" and 0 < len(token_string) <= 200 else None
    return g.bearer_digest


def cached_token(scope: str) -> tuple[PlatformToken, int] | None:
    """This request's bearer token as the process's cache holds it, when it is there, unexpired,
    unrevoked when it was read and holds ``scope``: the token, made the request's current
    token, and the revocation counter it was read at. None otherwise, with nothing read.

    The hot path of the check: the token is resolved without a statement of its own, and the
    caller confirms it by reading the counter in the statement that reads its answer
    (:func:`consent_widget.state.counted_lookup`). If that counter differs, some token or
    client has changed since, and the caller must authenticate again with
    :meth:`~CampaignResourceProtector.authenticate` before it answers. Every refusal (no
    header, an unknown, expired or revoked token, a missing scope) is left to
    ``authenticate``, which answers it in Authlib's terms.
    """
    digest = bearer_digest()
    found = current_app.extensions["consent_token_cache"].peek(digest) if digest else None
    if found is None:
        return None
    token = PlatformToken(found[0])
    # The checks of Authlib's BearerTokenValidator.validate_token, which passed when the row
    # was cached; the expiry is the clock's to decide on every use.
    if token.is_expired() or token.is_revoked() or scope not in token.get_scope().split():
        return None
    token_authenticated.send(require_oauth, token=token)
    g.authlib_server_oauth2_token = token
    return token, found[1]


def create_client(session, campaign: Campaign, *, name: str = "") -> tuple[OAuthClient, str]:
    """Create an API client for ``campaign``; return it and its secret, which is not stored."""
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(client_id="cw_" + secrets.token_urlsafe(16), secret_hash=_sha256(secret),
                         campaign_id=campaign.id, name=name, scopes=" ".join(SCOPES))
    session.add(client)
    session.flush()
    return client, secret


def _undecodable_basic_credentials() -> bool:
    """Whether the Basic credentials are not UTF-8, which Authlib would fail on with a 500."""
    header = request.headers.get("Authorization", "")
    if not header[:6].lower() == "basic ":
        return False
    try:
        base64.b64decode(header[6:].strip(), validate=False).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return True
    return False


@bp.post("/oauth/token")
def issue_token():
    """The token endpoint (RFC 6749 §4.4); errors keep the RFC 6749 shape."""
    if _undecodable_basic_credentials():
        response = jsonify(error="invalid_client",
                           error_description="The client credentials are not valid UTF-8.")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="consent_widget"'
        return response
    return current_app.extensions["consent_oauth"].create_token_response()


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    """Authorization server metadata (RFC 8414), so clients can discover the token endpoint."""
    base = current_app.config["BASE_URL"].rstrip("/")
    return jsonify(issuer=base, token_endpoint=base + "/oauth/token",
                   grant_types_supported=["client_credentials"],
                   token_endpoint_auth_methods_supported=["client_secret_basic",
                                                          "client_secret_post"],
                   scopes_supported=list(SCOPES), jwks_uri=base + "/.well-known/jwks.json")


def init_app(app) -> None:
    """Give ``app`` its own authorization server (it reads the app's token lifetime)."""
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN",
                          {"client_credentials": app.config["ACCESS_TOKEN_TTL"]})
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(ClientCredentialsGrant)
    app.extensions["consent_oauth"] = server
    app.extensions["consent_token_cache"] = TokenCache()
    app.register_blueprint(bp)


# --- managing a campaign's clients (the console and the CLI) ----------------------------------
def list_clients(session, campaign: Campaign) -> list[OAuthClient]:
    """The campaign's API clients, newest first, revoked ones included."""
    return list(session.scalars(select(OAuthClient).where(
        OAuthClient.campaign_id == campaign.id).order_by(OAuthClient.id.desc())))


def client_by_id(session, campaign: Campaign, client_id: str) -> OAuthClient | None:
    """One of the campaign's clients by its ``client_id``, or None (never another campaign's)."""
    if not client_id or len(client_id) > 64:
        return None
    return session.scalars(select(OAuthClient).where(
        OAuthClient.campaign_id == campaign.id, OAuthClient.client_id == client_id)).first()


def _revoke_tokens(session, client: OAuthClient, now) -> None:
    session.execute(update(OAuthToken).where(OAuthToken.client_pk == client.id,
                                             OAuthToken.revoked_at.is_(None))
                    .values(revoked_at=now))


def revoke_client(session, client: OAuthClient) -> None:
    """Revoke a client and every token it holds: its next request is refused (401)."""
    now = utcnow()
    client.revoked_at = client.revoked_at or now
    _revoke_tokens(session, client, now)
    session.flush()


def rotate_secret(session, client: OAuthClient) -> str:
    """Give a client a new secret (returned once, stored hashed); the old one stops working,
    and so do the tokens obtained with it, as after a leak they must."""
    secret = secrets.token_urlsafe(32)
    client.secret_hash = _sha256(secret)
    _revoke_tokens(session, client, utcnow())
    session.flush()
    return secret


def find_client(session, client_id: str) -> OAuthClient | None:
    """A client by its ``client_id`` in whichever campaign holds it, or None: for the
    operator's command line, which names clients without their campaign. The console, which
    acts within one campaign, uses :func:`client_by_id`."""
    if not client_id or len(client_id) > 64:
        return None
    return session.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()


def describe_client(client: OAuthClient) -> dict:
    """A client as the command line prints it: never its secret, not even hashed."""
    return {"client_id": client.client_id, "name": client.name,
            "scopes": client.scopes.split(), "created_at": client.created_at.isoformat(),
            "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None}
