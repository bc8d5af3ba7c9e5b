"""The platform SDK: ask consent_widget before matching anyone, keep the proof, hear withdrawals.

    from consent_widget.client import ConsentClient
    consent = ConsentClient("https://consent.example.org", CLIENT_ID, CLIENT_SECRET)
    answer = consent.check("social_matching", "facebook", email="ana@example.org")
    if answer.allowed:
        match(...); keep(answer.decision)

Needs only the standard library (HTTP with ``urllib``) and ``joserfc`` to verify signatures
offline; it imports nothing else from the server, so a platform can install ``joserfc`` and use
this one module. Every signed answer is verified against the service's JWKS (fetched once, then
cached; refetched when a token names an unknown key), with the algorithm pinned to EdDSA and the
``typ`` of each kind of token checked (RFC 8725). Requests answered 429 or 5xx, and requests that
got no answer, are retried with exponential backoff and jitter.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Mapping

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey

RECEIPT_TYP = "consent-receipt+jwt"
DECISION_TYP = "consent-decision+jwt"
PURGE_STATEMENT_TYP = "purge-statement+jwt"
ALGORITHM = "EdDSA"
_HEADER_PARAMETERS = {"alg", "kid", "typ"}
#: Standard Webhooks: refuse deliveries stamped more than five minutes from now (replays).
WEBHOOK_TOLERANCE = 300


class ConsentError(Exception):
    """Base of every error this SDK raises."""


class ApiError(ConsentError):
    """The service answered with an error: ``status``, ``code`` (e.g. ``invalid_email``) and a
    ``message`` for the integrator."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class AuthenticationError(ApiError):
    """The client id or secret was refused, or the token keeps being refused."""


class ServiceUnavailable(ConsentError):
    """No usable answer after every retry (connection refused, timeouts, 429, 5xx)."""


class VerificationError(ConsentError):
    """A token or webhook is not genuine, not of the expected kind, or no longer valid."""


@dataclass(frozen=True)
class Answer:
    """The answer about one person, as in the API (``given_at`` parsed)."""

    allowed: bool
    status: str
    purpose: str
    network: str | None
    subject_id: str | None
    receipt_id: str | None
    given_at: datetime | None
    notice_version: int | None

    @classmethod
    def from_json(cls, obj: Mapping) -> "Answer":
        """Build from the API's JSON object."""
        given_at = obj.get("given_at")
        return cls(allowed=obj["allowed"], status=obj["status"], purpose=obj["purpose"],
                   network=obj.get("network"), subject_id=obj.get("subject_id"),
                   receipt_id=obj.get("receipt_id"),
                   given_at=datetime.fromisoformat(given_at) if given_at else None,
                   notice_version=obj.get("notice_version"))


@dataclass(frozen=True)
class CheckResult(Answer):
    """One check: the answer and its ``decision`` JWS, to keep beside the matched data."""

    decision: str = ""
    claims: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BatchResult:
    """A batch check: answers in the order asked, one ``decision`` for all, and the exact
    ``request`` body the decision's ``request_sha256`` covers (keep both as the proof)."""

    results: list[Answer]
    decision: str
    request: bytes
    claims: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PurgeAudit:
    """The entries to purge (``index``, ``email`` or ``subject_id``, ``status``) and the signed
    ``statement`` of the answer, with the ``request`` body it covers."""

    checked: int
    purge: list[dict]
    statement: str
    request: bytes
    claims: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Event:
    """A consent event from the feed or a webhook: ``type``, ``timestamp``, ``data``."""

    id: str
    type: str
    timestamp: datetime
    data: dict
    cursor: str | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_address(email: str | None, signed_digest: str | None) -> bool:
    """Whether a decision's ``email_sha256`` is the digest of the address asked about.

    The server hashes the address trimmed and lower-cased; for an ASCII address that is all its
    normalisation does, so the SDK can check it without the server's dependencies. An
    internationalised address (IDNA, NFC) is only checked for having a digest at all.
    """
    if email is None:
        return signed_digest is None
    address = email.strip()
    if not address.isascii():
        return bool(signed_digest)
    return signed_digest == _sha256(address.lower().encode("utf-8"))


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


class ConsentClient:
    """A platform's client of the consent API, bound to its campaign by its credentials."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                 jwks_max_age: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.client_id, self._secret = client_id, client_secret
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.jwks_max_age = jwks_max_age
        self._token: str | None = None
        self._token_expires = 0.0
        self._keys: dict[str, OKPKey] = {}
        self._keys_fetched = 0.0

    # --- HTTP --------------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, dict]:
        """One request with retries; returns (status, headers, JSON object)."""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=body, method=method,
                                             headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    status, answer_headers, raw = response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                status, answer_headers, raw = exc.code, exc.headers, exc.read()
            except OSError as exc:
                if attempt == self.retries:
                    raise ServiceUnavailable(f"{method} {path}: {exc}") from exc
                self._sleep(attempt, None)
                continue
            if (status == 429 or status >= 500) and attempt < self.retries:
                self._sleep(attempt, answer_headers.get("Retry-After"))
                continue
            if status == 429 or status >= 500:
                raise ServiceUnavailable(f"{method} {path}: HTTP {status} after "
                                         f"{self.retries + 1} attempts")
            try:
                return status, dict(answer_headers), json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(status, "invalid_response", "the answer is not JSON") from None
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** attempt
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay * random.uniform(0.75, 1.0))

    def token(self) -> str:
        """A bearer token, fetched by client credentials and reused until shortly before it
        expires."""
        if self._token and time.time() < self._token_expires - 30:
            return self._token
        basic = base64.b64encode(f"{urllib.parse.quote(self.client_id)}:"
                                 f"{urllib.parse.quote(self._secret)}".encode()).decode()
        status, _, answer = self._send(
            "POST", "/oauth/token", b"grant_type=client_credentials",
            {"Authorization": f"Basic {basic}",
             "Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise AuthenticationError(status, answer.get("error", "error"),
                                      answer.get("error_description", "token refused"))
        self._token = answer["access_token"]
        self._token_expires = time.time() + int(answer.get("expires_in", 3600))
        return self._token

    def _api(self, method: str, path: str, body: bytes | None = None) -> dict:
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            status, _, answer = self._send(method, path, body, headers)
            if status == 401 and not renewed:
                self._token = None  # revoked or expired early: one fresh token, then give up
                continue
            if status >= 400:
                error = AuthenticationError if status == 401 else ApiError
                raise error(status, answer.get("error", "error"), answer.get("message", ""))
            return answer
        raise AssertionError("unreachable")

    # --- the API -----------------------------------------------------------------------------
    def check(self, purpose: str, network: str | None = None, *, email: str | None = None,
              subject_id: str | None = None) -> CheckResult:
        """May we process this person's data for ``purpose`` (and ``network``)? The decision is
        verified before it is returned."""
        question = {"purpose": purpose, **({"network": network} if network else {}),
                    **({"email": email} if email is not None else {"subject_id": subject_id})}
        answer = self._api("POST", "/api/v1/consents/check", json.dumps(question).encode())
        claims = self.verify_decision(answer["decision"])
        if claims.get("allowed") != answer["allowed"] or claims.get("status") != answer["status"]:
            raise VerificationError("the decision does not say what the answer says")
        # A genuine decision about another question (person, purpose or network) proves nothing.
        asked = (purpose, network or None, subject_id if email is None else None)
        signed = (claims.get("purpose"), claims.get("network"), claims.get("subject_id_asked"))
        if asked != signed or not _same_address(email, claims.get("email_sha256")):
            raise VerificationError("the decision answers another question")
        return CheckResult(**vars(Answer.from_json(answer)), decision=answer["decision"],
                           claims=claims)

    def _batch_request(self, path: str, purpose: str, network: str | None, emails, subject_ids):
        if (emails is None) == (subject_ids is None):
            raise ValueError("give exactly one of emails or subject_ids")
        entries = {"emails": list(emails)} if emails is not None else \
            {"subject_ids": list(subject_ids)}
        request = json.dumps({"purpose": purpose, **({"network": network} if network else {}),
                              **entries}).encode()
        return request, self._api("POST", path, request)

    def check_batch(self, purpose: str, network: str | None = None, *, emails=None,
                    subject_ids=None) -> BatchResult:
        """Up to 10,000 checks in one request; the one decision is verified to cover exactly
        this request and these answers."""
        request, answer = self._batch_request("/api/v1/consents/check-batch", purpose, network,
                                              emails, subject_ids)
        claims = self.verify_decision(answer["decision"])
        if claims.get("request_sha256") != _sha256(request) \
                or claims.get("results_sha256") != _sha256(_canonical(answer["results"])):
            raise VerificationError("the decision does not cover this request and its answers")
        return BatchResult(results=[Answer.from_json(r) for r in answer["results"]],
                           decision=answer["decision"], request=request, claims=claims)

    def purge_audit(self, network: str, *, emails=None, subject_ids=None,
                    purpose: str = "social_matching") -> PurgeAudit:
        """Which of these people must we purge? Verified against the signed statement."""
        request, answer = self._batch_request("/api/v1/consents/purge-audit", purpose, network,
                                              emails, subject_ids)
        claims = self._verify(answer["statement"], PURGE_STATEMENT_TYP)
        if claims.get("aud") != self.client_id:
            raise VerificationError("the statement was issued to another client")
        if claims.get("request_sha256") != _sha256(request) \
                or claims.get("purge_sha256") != _sha256(_canonical(answer["purge"])):
            raise VerificationError("the statement does not cover this request and its answer")
        return PurgeAudit(checked=answer["checked"], purge=answer["purge"],
                          statement=answer["statement"], request=request, claims=claims)

    def events(self, after: str = "0", limit: int = 100) -> Iterator[Event]:
        """Every consent event after the cursor ``after``, page by page; each event carries the
        cursor to resume from. Stops when the feed is exhausted."""
        while True:
            query = urllib.parse.urlencode({"after": after, "limit": limit})
            page = self._api("GET", f"/api/v1/events?{query}")
            for item in page["events"]:
                yield Event(id=item["id"], type=item["type"], data=item["data"],
                            timestamp=datetime.fromisoformat(item["timestamp"]),
                            cursor=item["cursor"])
            after = page["next"]
            if not page["has_more"]:
                return

    def receipt(self, receipt_id: str) -> dict:
        """A receipt of the campaign, its signature verified; returns its claims."""
        answer = self._api("GET", f"/api/v1/receipts/{urllib.parse.quote(receipt_id, safe='')}")
        return self.verify_receipt(answer["jws"])

    # --- offline verification ---------------------------------------------------------------
    def _key(self, kid) -> OKPKey:
        stale = time.time() - self._keys_fetched > self.jwks_max_age
        if stale or kid not in self._keys:
            _, _, jwks = self._send("GET", "/.well-known/jwks.json", None, {})
            self._keys = {k["kid"]: OKPKey.import_key(k) for k in jwks.get("keys", [])
                          if k.get("kty") == "OKP" and k.get("alg") == ALGORITHM}
            self._keys_fetched = time.time()
        if kid not in self._keys:
            raise VerificationError("the token's key is not one of the service's keys")
        return self._keys[kid]

    def _verify(self, token: str, typ: str) -> dict:
        try:
            signed = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, AttributeError):
            raise VerificationError("not a JWS in compact serialization") from None
        header = signed.headers()
        if header.get("alg") != ALGORITHM or header.get("typ") != typ \
                or set(header) - _HEADER_PARAMETERS:
            raise VerificationError(f"expected an EdDSA {typ} token with alg, kid and typ only")
        key = self._key(header.get("kid"))
        with warnings.catch_warnings():  # RFC 9864 renames EdDSA; verifiers still use the name
            warnings.simplefilter("ignore", SecurityWarning)
            try:
                genuine = jws.validate_compact(signed, key, algorithms=[ALGORITHM])
            except (JoseError, ValueError):
                genuine = False
        if not genuine:
            raise VerificationError("the signature does not match")
        try:
            claims = json.loads(signed.payload)
        except ValueError:
            raise VerificationError("the payload is not JSON") from None
        if not isinstance(claims, dict):
            raise VerificationError("the payload is not a JSON object")
        return claims

    def verify_receipt(self, token: str) -> dict:
        """The claims of a genuine consent receipt (it never expires)."""
        claims = self._verify(token, RECEIPT_TYP)
        if claims.get("version") != "KI-CR-v1.1.0":
            raise VerificationError("not a consent receipt")
        return claims

    def verify_decision(self, token: str, now: float | None = None) -> dict:
        """The claims of a genuine decision issued to this client and not yet expired."""
        claims = self._verify(token, DECISION_TYP)
        expires = claims.get("exp")
        if not isinstance(expires, int) or (now if now is not None else time.time()) >= expires:
            raise VerificationError("the decision has expired")
        if claims.get("aud") != self.client_id:
            raise VerificationError("the decision was issued to another client")
        return claims

    @staticmethod
    def verify_webhook(payload: bytes, headers: Mapping[str, str], secret: str, *,
                       now: float | None = None) -> Event:
        """Check a Standard Webhooks delivery (signature, timestamp within 5 minutes) and return
        its event; ``event.id`` is the ``webhook-id`` to process only once."""
        lower = {name.lower(): value for name, value in headers.items()}
        webhook_id, stamp = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
        if not webhook_id or not stamp.isdigit():
            raise VerificationError("missing webhook-id or webhook-timestamp")
        if abs((now if now is not None else time.time()) - int(stamp)) > WEBHOOK_TOLERANCE:
            raise VerificationError("the webhook timestamp is too far from now")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise VerificationError("the secret is not a whsec_ secret") from None
        mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + payload, hashlib.sha256).digest()
        expected = base64.b64encode(mac).decode()
        offered = [part.partition(",")[2] for part in lower.get("webhook-signature", "").split()
                   if part.startswith("v1,")]
        if not any(hmac.compare_digest(expected, sig) for sig in offered):
            raise VerificationError("no valid signature")
        body = json.loads(payload)
        return Event(id=webhook_id, type=body["type"], data=body["data"],
                     timestamp=datetime.fromisoformat(body["timestamp"]))
