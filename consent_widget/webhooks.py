"""Webhooks: a campaign's endpoints, Standard Webhooks signatures, queueing and delivery.

An event is queued in the outbox in the transaction that records it (one row per subscribed
endpoint), and the outbox worker delivers it at least once. Each delivery is signed per Standard
Webhooks v1: ``webhook-id`` (the event's id, the same on every attempt, so receivers can ignore
repeats), ``webhook-timestamp`` (the time of *this* attempt, since receivers refuse anything more
than five minutes off) and ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``
under the endpoint's ``whsec_`` secret.

An endpoint answering ``410 Gone`` is disabled: its pending events go dead and nothing more is
queued for it until it is added again.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from flask import current_app, has_app_context

from . import db, destinations, events, outbox
from .models import Campaign, ConsentEvent, OutboxMessage, Subject, WebhookEndpoint, utcnow

KIND = "webhook"
ACTIVE, DISABLED = "active", "disabled"
SECRET_PREFIX = "whsec_"
#: Seconds allowed for one delivery, connection included; well within the outbox's lease.
TIMEOUT = 15
USER_AGENT = "consent_widget-webhooks/1"


class InvalidEndpoint(ValueError):
    """The endpoint's URL or event filter is not acceptable; the message says why."""


class DeliveryFailed(Exception):
    """The endpoint did not acknowledge the event; the worker will try again."""


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, webhook_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.ts.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode("utf-8") + payload
    mac = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(secret: str, webhook_id: str, payload: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery of ``payload``, timestamped now."""
    timestamp = int(time.time())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, webhook_id, timestamp, payload)}


def encode(body: dict) -> bytes:
    """The exact bytes sent for a body: compact JSON, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- endpoints -----------------------------------------------------------------------------
def _allow_private() -> bool:
    """Whether webhooks may go to private addresses (the demo CRM, tests): never in production."""
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE")) if has_app_context() else False


def _check_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise InvalidEndpoint(f"not an http(s) URL: {url!r}")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        # http.client would refuse them at every delivery; say so now instead.
        raise InvalidEndpoint("the URL may not contain spaces or control characters")
    if parts.username or parts.password:
        raise InvalidEndpoint("put no credentials in the URL; the signature authenticates us")
    try:
        destinations.resolve(url, allow_private=_allow_private())
    except destinations.RefusedDestination as exc:
        raise InvalidEndpoint(str(exc)) from None
    return url


def add_endpoint(session: Session, campaign: Campaign, url: str,
                 event_types: list[str] | tuple[str, ...] = ()) -> WebhookEndpoint:
    """Register ``url`` for ``event_types`` (none: every type) with a new secret; flushed."""
    unknown = sorted(set(event_types) - set(events.EVENT_TYPES))
    if unknown:
        raise InvalidEndpoint(f"unknown event types {', '.join(unknown)}; known: "
                              f"{', '.join(events.EVENT_TYPES)}")
    endpoint = WebhookEndpoint(public_id="ep_" + secrets.token_urlsafe(12),
                               campaign_id=campaign.id, url=_check_url(url),
                               secret=new_secret(), events=sorted(set(event_types)),
                               status=ACTIVE, disabled_reason="", created_at=utcnow())
    session.add(endpoint)
    _forget_endpoints(session)
    session.flush()
    return endpoint


def endpoints(session: Session, campaign: Campaign) -> list[WebhookEndpoint]:
    """The campaign's endpoints, oldest first."""
    return list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.campaign_id == campaign.id).order_by(WebhookEndpoint.id)))


def endpoint_by_id(session: Session, campaign: Campaign, public_id: str) -> WebhookEndpoint | None:
    """One of the campaign's endpoints by its id, or None (never another campaign's)."""
    return session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.campaign_id == campaign.id,
        WebhookEndpoint.public_id == public_id)).first()


def remove_endpoint(session: Session, endpoint: WebhookEndpoint) -> int:
    """Delete an endpoint and its undelivered events; return how many events were dropped."""
    dropped = _drop_pending(session, endpoint.public_id, "endpoint removed")
    session.delete(endpoint)
    _forget_endpoints(session)
    session.flush()
    return dropped


def _drop_pending(session: Session, public_id: str, reason: str) -> int:
    """Set aside the undelivered events of an endpoint that will never take them."""
    return session.execute(update(OutboxMessage).where(
        OutboxMessage.kind == KIND, OutboxMessage.recipient == public_id,
        OutboxMessage.status == outbox.PENDING).values(
        status=outbox.DEAD, last_error=reason)).rowcount


def describe(endpoint: WebhookEndpoint, with_secret: bool = False) -> dict:
    """An endpoint as the CLI prints it; the secret only when asked (on creation)."""
    shown = {"id": endpoint.public_id, "url": endpoint.url,
             "events": endpoint.events or sorted(events.EVENT_TYPES), "status": endpoint.status,
             "disabled_reason": endpoint.disabled_reason or None,
             "created_at": endpoint.created_at.isoformat()}
    if with_secret:
        shown["secret"] = endpoint.secret
    return shown


# --- queueing ------------------------------------------------------------------------------
#: session.info key of the active endpoints read in the current transaction.
_ACTIVE_ENDPOINTS = "consent_webhook_endpoints"
#: Built once: it runs under the ledger lock of every confirmation. Only the columns queueing
#: needs, read on the driver's cursor: ORM objects cost several times the read itself.
_ACTIVE_QUERY = select(WebhookEndpoint.public_id, WebhookEndpoint.events).where(
    WebhookEndpoint.campaign_id == bindparam("campaign_id"), WebhookEndpoint.status == ACTIVE)


def _active_endpoints(session: Session, campaign: Campaign) -> list:
    """The campaign's active endpoints (their ``public_id`` and ``events``), read once per
    transaction."""
    # Read once per transaction: a signup records several ledger events, and each would read
    # the campaign's endpoints again. What changes endpoints forgets the list (_forget_endpoints).
    transaction = session.get_transaction()
    cached = session.info.get(_ACTIVE_ENDPOINTS)
    if cached is None or cached[0] is not transaction:
        cached = session.info[_ACTIVE_ENDPOINTS] = (transaction, {})
    found = cached[1].get(campaign.id)
    if found is None:
        if session.autoflush and (session.new or session.dirty or session.deleted):
            session.flush()  # as the ORM's query would: an endpoint added just now is read
        found = cached[1][campaign.id] = db.driver_rows(
            session.connection(), _ACTIVE_QUERY, {"campaign_id": campaign.id})
    return found


def _forget_endpoints(session: Session) -> None:
    session.info.pop(_ACTIVE_ENDPOINTS, None)


def _subscribers(session: Session, campaign: Campaign, event_type: str) -> list:
    return [endpoint for endpoint in _active_endpoints(session, campaign)
            if not endpoint.events or event_type in endpoint.events]


def _enqueue(session: Session, campaign: Campaign, endpoint, message: dict) -> OutboxMessage:
    return outbox.enqueue(session, kind=KIND, recipient=endpoint.public_id,
                          payload=json.dumps(message, separators=(",", ":")),
                          campaign_id=campaign.id)


def queue_ledger_event(session: Session, campaign: Campaign, row: ConsentEvent) -> int:
    """Queue a ledger event for every endpoint subscribed to it, in the caller's transaction.

    Only the body's source is stored (the ledger event's id): the worker builds the body from
    the ledger when it sends, so the receipt issued later in the same transaction is named.
    Returns how many deliveries were queued.
    """
    event_class = events.LEDGER_EVENTS.get(row.type)
    if event_class is None:
        return 0
    subscribers = _subscribers(session, campaign, event_class.type)
    for endpoint in subscribers:
        _enqueue(session, campaign, endpoint, {"id": events.event_id(row), "event": row.id})
    return len(subscribers)


def queue_event(session: Session, campaign: Campaign, event: events.EventData,
                now: datetime | None = None) -> int:
    """Queue an event that is not a ledger event (an erasure) with its body, for every
    subscriber; return how many deliveries were queued."""
    message = {"id": "evt_" + secrets.token_hex(16),
               "body": events.body(event, now or utcnow())}
    targets = _subscribers(session, campaign, event.type)
    for endpoint in targets:
        _enqueue(session, campaign, endpoint, message)
    return len(targets)


def queue_subject_erased(session: Session, campaign: Campaign, subject: Subject,
                         now: datetime | None = None) -> int:
    """Tell the platforms that ``subject`` was erased (``subject.erased``)."""
    return queue_event(session, campaign, events.SubjectErased(
        campaign=campaign.slug, subject_id=subject.public_id, email=None, purpose=None,
        network=None, status=None, receipt_id=None), now)


def has_event(session: Session, campaign: Campaign, event_id: str) -> bool:
    """Whether ``event_id`` is the webhook-id of an event of ``campaign`` (never another
    campaign's). It reads the campaign's webhook rows, as :func:`redeliver` does."""
    rows = session.scalars(select(OutboxMessage.payload).where(
        OutboxMessage.kind == KIND, OutboxMessage.campaign_id == campaign.id))
    return any(json.loads(payload).get("id") == event_id for payload in rows)


def redeliver(session: Session, campaign: Campaign, *, event_id: str | None = None,
              since: datetime | None = None, until: datetime | None = None) -> int:
    """Queue again, with the same ``webhook-id``, one event or every event created in a time
    range, to the endpoints (still active) that it was first queued for; return how many."""
    query = select(OutboxMessage).where(OutboxMessage.kind == KIND,
                                        OutboxMessage.campaign_id == campaign.id)
    if since is not None:
        query = query.where(OutboxMessage.created_at >= since)
    if until is not None:
        query = query.where(OutboxMessage.created_at < until)
    active = {endpoint.public_id: endpoint for endpoint in endpoints(session, campaign)
              if endpoint.status == ACTIVE}
    # An event still waiting for an endpoint is not queued for it a second time.
    seen = {(json.loads(row.payload)["id"], row.recipient) for row in session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == KIND,
                                    OutboxMessage.campaign_id == campaign.id,
                                    OutboxMessage.status == outbox.PENDING))}
    count = 0
    for row in session.scalars(query.order_by(OutboxMessage.id)).all():
        message = json.loads(row.payload)
        key = (message["id"], row.recipient)
        if (event_id is not None and message["id"] != event_id) or key in seen \
                or row.recipient not in active:
            continue
        seen.add(key)
        _enqueue(session, campaign, active[row.recipient], message)
        count += 1
    return count


# --- delivery ------------------------------------------------------------------------------
def post(url: str, secret: str, webhook_id: str, body: dict) -> int:
    """POST one signed delivery of ``body``; return the HTTP status. A redirect is not
    followed (it would resend a signed body somewhere unverified): its 3xx is the answer.

    The URL's name is resolved and checked at each delivery, and the connection goes to the
    address checked (see :mod:`consent_widget.destinations`). Raises
    ``destinations.RefusedDestination`` for a destination refused, DeliveryFailed when no
    answer came (refused, reset, timed out, TLS)."""
    payload = encode(body)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signed_headers(secret, webhook_id, payload)}
    try:
        return destinations.post(url, payload, headers, timeout=TIMEOUT,
                                 allow_private=_allow_private())
    except destinations.RefusedDestination:
        raise
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


def send_test(campaign: Campaign, endpoint: WebhookEndpoint) -> dict:
    """Send a ``webhook.test`` event to ``endpoint`` now, outside the outbox; report the answer."""
    webhook_id = "evt_" + secrets.token_hex(16)
    body = events.body(events.WebhookTest(
        campaign=campaign.slug, subject_id="sub_test", email=None, purpose=None, network=None,
        status=None, receipt_id=None), utcnow())
    try:
        status = post(endpoint.url, endpoint.secret, webhook_id, body)
    except (DeliveryFailed, destinations.RefusedDestination) as exc:
        return {"ok": False, "webhook_id": webhook_id, "error": str(exc)}
    return {"ok": 200 <= status < 300, "webhook_id": webhook_id, "status": status}


def _disable(session: Session, endpoint_pk: int, public_id: str, reason: str) -> None:
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_pk)
                    .values(status=DISABLED, disabled_reason=reason, disabled_at=utcnow()))
    _forget_endpoints(session)
    _drop_pending(session, public_id, f"endpoint disabled: {reason}")
    session.commit()


def _record_answer(session: Session, message_id: int, status: int) -> None:
    """Keep the HTTP status of the attempt on the outbox row, for the console."""
    session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                    .values(last_status=status).execution_options(synchronize_session=False))
    session.commit()


def deliver(app, claim: outbox.Claim) -> None:
    """Send one queued event to its endpoint; the outbox's sender for ``kind="webhook"``.

    Returns on a 2xx answer. Raises :class:`outbox.PermanentFailure` when the endpoint is gone
    (removed, disabled, or answering ``410``, which disables it), else :class:`DeliveryFailed`.
    """
    message = json.loads(claim.payload)
    with app.extensions["consent_db"]() as session:
        endpoint = session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == claim.recipient,
            WebhookEndpoint.campaign_id == claim.campaign_id)).first()
        if endpoint is None or endpoint.status != ACTIVE:
            raise outbox.PermanentFailure("endpoint removed or disabled")
        if "event" in message:
            campaign = session.get(Campaign, claim.campaign_id)
            body = events.ledger_body(session, campaign, message["event"])
            if body is None:
                raise outbox.PermanentFailure("the ledger event no longer exists")
        else:
            body = message["body"]
        url, secret, endpoint_pk, public_id = (endpoint.url, endpoint.secret, endpoint.id,
                                               endpoint.public_id)
        session.rollback()  # hold no transaction (an SQLite write lock) across the request
        try:
            status = post(url, secret, message["id"], body)
        except destinations.RefusedDestination as exc:
            # An address never allowed will not become allowed by retrying; a name that did
            # not resolve may resolve later.
            if exc.permanent:
                raise outbox.PermanentFailure(f"destination refused: {exc}") from None
            raise DeliveryFailed(f"destination refused: {exc}") from None
        _record_answer(session, claim.id, status)
        if status == 410:
            _disable(session, endpoint_pk, public_id, "answered 410 Gone")
            raise outbox.PermanentFailure("410 Gone: endpoint disabled")
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")


def set_active(session: Session, endpoint: WebhookEndpoint, active: bool,
               reason: str = "") -> None:
    """Turn an endpoint off (its waiting deliveries are set aside) or back on; flushed."""
    endpoint.status = ACTIVE if active else DISABLED
    endpoint.disabled_reason = "" if active else reason
    endpoint.disabled_at = None if active else utcnow()
    if not active:
        _drop_pending(session, endpoint.public_id, f"endpoint disabled: {reason}")
    _forget_endpoints(session)
    session.flush()


def deliveries(session: Session, campaign: Campaign, endpoint: WebhookEndpoint,
               limit: int = 100) -> list[OutboxMessage]:
    """The endpoint's deliveries, newest first."""
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == KIND, OutboxMessage.campaign_id == campaign.id,
        OutboxMessage.recipient == endpoint.public_id)
        .order_by(OutboxMessage.id.desc()).limit(limit)))
