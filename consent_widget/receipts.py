"""Consent receipts and check decisions: what they say, and the rules each kind must meet.

A receipt is a Kantara Consent Receipt v1.1 whose ``ext`` adds what ISO/IEC TS 27560 asks of a
consent record; a decision asserts one answer of the check API for a few minutes. Both are JWS
compact tokens signed by the key ring (:mod:`consent_widget.keys`); retired keys stay published
so every receipt keeps verifying, and each kind of token has its own validation rules (RFC 8725).
"""
from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import datetime, timezone
from functools import lru_cache

from flask import Blueprint, current_app, jsonify
from flask_babel import format_datetime, get_locale, get_timezone
from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import db, keys, notices
from .keys import InvalidSignature
from .state import display_order, effective_status, states_of
from .models import (EVENT_TYPES, EXPIRED, GIVEN, NEWSLETTER, REQUESTED, SOCIAL_MATCHING,
                     WITHDRAWN, Campaign, ConsentEvent, ConsentState, Notice, Receipt, Signup,
                     Subject, utcnow)

RECEIPT_TYP = "consent-receipt+jwt"
DECISION_TYP = "consent-decision+jwt"
KANTARA_VERSION = "KI-CR-v1.1.0"
#: The contract's maximum lifetime of a decision, enforced again when one is verified.
MAX_DECISION_TTL = 300
#: When /.well-known/gpc.json last changed (the GPC specification's ``lastUpdate``).
GPC_LAST_UPDATE = "2026-11-29"
#: Short, so that a rotated key reaches verifiers within minutes.
WELL_KNOWN_CACHE_CONTROL = "public, max-age=300"

_REGISTERED_CLAIMS = ("iss", "sub", "aud")
#: W3C DPV status names: ConsentRequested, ConsentGiven, ConsentRefused, ConsentWithdrawn, ...
_DPV_STATUS = {status: "Consent" + status.capitalize() for status in EVENT_TYPES}
_COLLECTION_METHODS = {
    "email_confirmation": "web form with email confirmation (double opt-in)",
    "manage_page": "withdrawal on the manage page linked from every email",
    "one_click_unsubscribe": "one-click unsubscribe from a newsletter email (RFC 8058)",
    "validity_expired": "end of the consent's validity period",
    "erasure_request": "erasure requested from the controller",
    "manage_page_erasure": "erasure on the manage page linked from every email",
}
# Kantara v1.1 purpose categories. Matching enriches the campaign's own view of its supporters;
# it is deliberately not "Marketing", which would read as consent to ad targeting.
_PURPOSE_CATEGORIES = {NEWSLETTER: ["4 - Contact Requested"],
                       SOCIAL_MATCHING: ["5 - Personalized Experience"]}
_PII_CATEGORIES = {NEWSLETTER: ["email address"],
                   SOCIAL_MATCHING: ["email address", "public social profile", "location",
                                     "biography"]}

bp = Blueprint("receipts", __name__)


def sign_decision(session: Session, claims: dict, now: datetime | None = None, *,
                  create_key: bool = True) -> str:
    """Sign a check answer as a decision valid for DECISION_TTL seconds; adds iat, exp and jti.

    A registered claim given as None (``sub`` for an unknown email) is left out: RFC 7519 makes
    it a string, and verifiers such as PyJWT reject the whole token over a null one. With
    ``create_key=False``, raises keys.NoSigningKey before the first signing key exists.
    """
    return keys.sign(session, decision_claims(claims, now), DECISION_TYP,
                     create_key=create_key)


def decision_claims(claims: dict, now: datetime | None = None) -> dict:
    """The claims :func:`sign_decision` signs: ``claims`` without a registered claim given as
    None, with iat, exp (DECISION_TTL seconds later) and a new jti."""
    issued = int(now.timestamp()) if now is not None else int(time.time())
    body = {name: value for name, value in claims.items()
            if not (name in _REGISTERED_CLAIMS and value is None)}
    body.update(iat=issued, exp=issued + current_app.config["DECISION_TTL"], jti=new_jti())
    return body


def new_jti() -> str:
    """A new token id (``jti``): a random version 4 UUID's text, from the system's generator."""
    # A random (version 4) UUID's text, as str(uuid.uuid4()) writes it, without building the
    # UUID object: every check signs one.
    value = bytearray(os.urandom(16))
    value[6] = value[6] & 0x0F | 0x40
    value[8] = value[8] & 0x3F | 0x80
    text = value.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def verify(session: Session, token: str, typ: str, *, now: datetime | None = None) -> dict:
    """The claims of ``token`` if it is a genuine, valid ``typ`` token signed by one of our keys.

    Raises InvalidSignature for anything else, malformed input included. ``now`` defaults to
    the current time and decides whether a decision has expired.
    """
    if typ not in _CLAIM_RULES:
        raise ValueError(f"unknown kind of token {typ!r}")
    claims = keys.verify_signature(session, token, typ)
    _CLAIM_RULES[typ](claims, now or utcnow())
    return claims


def _check_receipt(claims: dict, now: datetime) -> None:
    """A receipt never expires: it proves what was true when it was issued."""
    receipt_id = claims.get("consentReceiptID")
    if claims.get("version") != KANTARA_VERSION or not isinstance(receipt_id, str) \
            or claims.get("jti") != receipt_id:
        raise InvalidSignature("the payload is not a consent receipt")


def _check_decision(claims: dict, now: datetime) -> None:
    """A decision is only good for a few minutes after the check it answers."""
    issued, expires = claims.get("iat"), claims.get("exp")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (issued, expires)):
        raise InvalidSignature("a decision must carry integer iat and exp")
    if expires - issued > MAX_DECISION_TTL:
        raise InvalidSignature(f"a decision may not last more than {MAX_DECISION_TTL} seconds")
    if now.timestamp() >= expires:
        raise InvalidSignature("the decision has expired")


_CLAIM_RULES = {RECEIPT_TYP: _check_receipt, DECISION_TYP: _check_decision}


# --- receipts --------------------------------------------------------------------------------
def issue(session: Session, campaign: Campaign, subject: Subject, *, now: datetime, locale: str,
          origin: str, method: str, states: list[ConsentState] | None = None,
          gpc: bool | None = None, confirmed_signup: int | None = None) -> Receipt:
    """Sign a receipt of the subject's current consents, superseding their last one, and write
    it in the caller's transaction.

    Called by the ledger inside its transaction, which holds the campaign's ledger lock. Every
    state row of the subject then names the new receipt. ``states`` are the subject's current
    states and ``gpc`` the signal of their latest signup, when the caller has them at hand.
    ``confirmed_signup`` is the signup a confirmation confirms: the requests it confirmed are
    then read with the states' events, in one statement.
    """
    states = states_of(session, campaign, subject) if states is None else states
    receipt = build(session, campaign, subject, now=now, locale=locale, origin=origin,
                    method=method, states=states, gpc=gpc, confirmed_signup=confirmed_signup)
    return write(session, receipt, states)


def build(session: Session, campaign: Campaign, subject: Subject, *, now: datetime, locale: str,
          origin: str, method: str, states: list[ConsentState], gpc: bool | None = None,
          pending_events: dict | None = None, create_key: bool = True,
          reads=None, confirmed_signup: int | None = None) -> Receipt:
    """Sign a receipt of ``states`` (the subject's states once the change is made), superseding
    the subject's last receipt, without writing it (:func:`write` does).

    ``pending_events`` are events not written yet, by the ``event_id`` the states give them: the
    ledger prepares a confirmation before it takes the lock (see ``ledger.prepare_confirmation``).
    With ``create_key=False``, raises keys.NoSigningKey before the first signing key exists.
    ``reads`` is the connection the receipt's facts are read on, by default the session's;
    ``confirmed_signup`` as for :func:`issue`.
    """
    states = sorted(states, key=display_order)
    # What is read here was written before this call: a caller's pending ORM changes, if any,
    # have nothing to do with it and can wait for the caller's own flush.
    with session.no_autoflush:
        shown = notices.by_ids(session, campaign, [state.notice_id for state in states])
        items = [(state, effective_status(state, now), shown.get(state.notice_id))
                 for state in states]
        receipt_id = str(uuid.uuid4())
        reads = reads if reads is not None else session.connection()
        previous = _newest_receipt_id(reads, campaign, subject)
        if gpc is None:
            gpc = _gpc_signal(session, campaign, subject)
        claims = _receipt_claims(session, campaign, subject, items, receipt_id=receipt_id,
                                 supersedes=previous, now=now, locale=locale, origin=origin,
                                 method=method, gpc=gpc, pending_events=pending_events or {},
                                 reads=reads, confirmed_signup=confirmed_signup)
    # The key ring's current signer, which each process keeps for a minute rather than reading
    # the ring under the ledger lock; a key rotated meanwhile stays published, so this receipt
    # verifies whichever of the two signed it.
    token = keys.sign(session, claims, RECEIPT_TYP, create_key=create_key)
    return Receipt(id=receipt_id, campaign_id=campaign.id, subject_id=subject.id,
                   supersedes=previous, kid=_kid_of(token), jws=token, issued_at=now)


def write(session: Session, receipt: Receipt, states: list[ConsentState]) -> Receipt:
    """Write a receipt made by :func:`build`, and name it on every state of its subject."""
    connection = session.connection()
    db.driver_write(connection, _INSERT_RECEIPT, {column: getattr(receipt, column)
                                                  for column in _RECEIPT_COLUMNS})
    db.driver_write(connection, _NAME_RECEIPT, {"campaign": receipt.campaign_id,
                                                "subject": receipt.subject_id,
                                                "receipt": receipt.id})
    for state in states:
        # The ledger's states are ORM objects or, read under its lock, plain ones.
        if isinstance(state, ConsentState):
            set_committed_value(state, "receipt_id", receipt.id)
        else:
            state.receipt_id = receipt.id
    return receipt


_RECEIPT_COLUMNS = [column.key for column in Receipt.__table__.columns]
_INSERT_RECEIPT = insert(Receipt.__table__)
_STATES = ConsentState.__table__
_NAME_RECEIPT = (update(_STATES).where(_STATES.c.campaign_id == bindparam("campaign"),
                                       _STATES.c.subject_id == bindparam("subject"))
                 .values(receipt_id=bindparam("receipt")))


def _segment(token: str, index: int) -> dict:
    """The JSON of one segment (0: header, 1: payload) of one of our own compact JWS, read
    without the JWS library, whose parsing and checks cost more than this on every page that
    shows a receipt: we signed it, so there is nothing to check."""
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _kid_of(token: str) -> str:
    """The key id in the header of one of our own compact JWS."""
    return _segment(token, 0)["kid"]


def decode(receipt: Receipt) -> dict:
    """The claims of one of our stored receipts, for display (we signed it: no check needed)."""
    return _segment(receipt.jws, 1)


def _newest_receipt_id(reads, campaign: Campaign, subject: Subject) -> str | None:
    # On the driver's cursor: it is read for every receipt, and costs SQLite a tenth of what
    # SQLAlchemy's execution of it costs.
    rows = db.driver_rows(reads, _NEWEST_RECEIPT, {"campaign": campaign.id,
                                                   "subject": subject.id})
    return rows[0].id if rows else None


# The head of the subject's chain is the receipt no other supersedes; unlike the newest
# issued_at, it stays unambiguous when two receipts share a timestamp.
_RECEIPTS = Receipt.__table__
_NEWEST_RECEIPT = select(_RECEIPTS.c.id).where(
    _RECEIPTS.c.campaign_id == bindparam("campaign"),
    _RECEIPTS.c.subject_id == bindparam("subject"),
    _RECEIPTS.c.id.not_in(select(_RECEIPTS.c.supersedes).where(
        _RECEIPTS.c.subject_id == bindparam("subject"), _RECEIPTS.c.supersedes.is_not(None)))
).limit(1)


def _receipt_claims(session: Session, campaign: Campaign, subject: Subject, items: list[tuple],
                    *, receipt_id: str, supersedes: str | None, now: datetime, locale: str,
                    origin: str, method: str, gpc: bool, pending_events: dict,
                    reads, confirmed_signup: int | None = None) -> dict:
    """The Kantara v1.1 payload, with the ISO/IEC TS 27560 additions in ``ext``.

    ``items`` holds (state, effective status, notice) for every item the subject was asked about.
    """
    given = [(state, notice) for state, status, notice in items if status == GIVEN]
    # Kantara lists the services a receipt is about: those given, or, for a receipt that records
    # their end (every consent withdrawn or expired), those that ended, with how they ended.
    ended = [(state, notice) for state, status, notice in items
             if status in (WITHDRAWN, EXPIRED) and notice is not None]
    issued = int(now.timestamp())
    return {
        "version": KANTARA_VERSION,
        "jurisdiction": campaign.jurisdiction,
        "consentTimestamp": issued,
        "collectionMethod": _COLLECTION_METHODS.get(method, method.replace("_", " ")),
        "consentReceiptID": receipt_id,
        "piiPrincipalId": subject.public_id,
        "piiControllers": [_controller(campaign)],
        "policyUrl": campaign.policy_url,
        "services": ([_service(campaign, state, notice) for state, notice in given] or
                     [_service(campaign, state, notice, ended_at=now) for state, notice in ended]),
        # Supporting a campaign reveals a political opinion (GDPR Art. 9), whatever was chosen.
        "sensitive": True,
        "spiCat": ["political opinions"],
        "language": locale,
        "iss": current_app.config["BASE_URL"],
        "sub": subject.public_id,
        "iat": issued,
        "jti": receipt_id,
        "ext": {
            "campaign": campaign.slug,
            "language": locale,
            "origin": origin,
            "notices": [_notice_record(state, notice) for state, _, notice in items if notice],
            "states": [_state_record(state, status, notice) for state, status, notice in items],
            "events": sorted(_event_records(reads, campaign, [state for state, _, _ in items],
                                            pending_events, confirmed_signup),
                             key=lambda record: record["time"]),
            **_policy_texts(campaign, [state for state, _ in given]),
            "supersedes": supersedes,
            "gpc": gpc,
            "storageLocations": [f"the consent database of {campaign.controller}, operated "
                                 f"with consent_widget at {current_app.config['BASE_URL']}"],
        },
    }


def _controller(campaign: Campaign) -> dict:
    return {"piiController": campaign.controller, "contact": campaign.contact_email,
            "address": {"streetAddress": campaign.controller_address,
                        "addressCountry": campaign.jurisdiction},
            "email": campaign.contact_email, "phone": "", "piiControllerUrl": campaign.policy_url}


def _gpc_signal(session: Session, campaign: Campaign, subject: Subject) -> bool:
    """Whether the browser of the subject's latest signup sent Global Privacy Control."""
    return bool(session.scalar(select(Signup.gpc).where(
        Signup.campaign_id == campaign.id, Signup.subject_id == subject.id)
        .order_by(Signup.id.desc()).limit(1)))


def _service(campaign: Campaign, state: ConsentState, notice: Notice,
             ended_at: datetime | None = None) -> dict:
    matching = state.purpose == SOCIAL_MATCHING
    termination = ("withdrawal at any time via the manage link in every email, or when "
                   f"consent expires after {campaign.validity_days} days")
    if ended_at is not None:
        termination = f"consent {state.status} on {_iso(state.updated_at)}"
    purpose = {
        # The exact text the person agreed to: the ledger records the notice of every ``given``.
        "purpose": notice.text,
        "purposeCategory": _PURPOSE_CATEGORIES[state.purpose],
        "consentType": "EXPLICIT",
        "piiCategory": _PII_CATEGORIES[state.purpose],
        "primaryPurpose": not matching,
        "termination": termination,
        # Matching discloses the email address to the network, which looks the profile up.
        "thirdPartyDisclosure": matching,
    }
    if matching:
        purpose["thirdPartyName"] = notices.network_label(state.network)
    service = f"{state.purpose}:{state.network}" if state.network else state.purpose
    return {"service": service, "purposes": [purpose]}


def _notice_record(state: ConsentState, notice: Notice) -> dict:
    return {"purpose": state.purpose, "network": state.network, "version": notice.version,
            "sha256": notice.text_sha256, "locale": notice.locale}


def _state_record(state: ConsentState, status: str, notice: Notice | None) -> dict:
    return {"purpose": state.purpose, "network": state.network, "status": status,
            "dpvStatus": _DPV_STATUS[status], "since": _iso(state.updated_at),
            "expiresAt": _iso(state.expires_at) if status == GIVEN else None,
            "noticeVersion": notice.version if notice else None}


_EVENTS = ConsentEvent.__table__
_EVENT_FIELDS = (_EVENTS.c.id, _EVENTS.c.purpose, _EVENTS.c.network, _EVENTS.c.type,
                 _EVENTS.c.occurred_at, _EVENTS.c.actor, _EVENTS.c.method, _EVENTS.c.signup_id)


_EVENTS_BY_ID = select(*_EVENT_FIELDS).where(
    _EVENTS.c.campaign_id == bindparam("campaign"),
    _EVENTS.c.id.in_(bindparam("ids", expanding=True)))
# By the index on signup_id: a receipt's cost must not grow with the campaign's ledger. No
# campaign condition: the signups come from the campaign's own events, and with one SQLite
# (which keeps no statistics) would scan the campaign's events for two signups or more.
_REQUESTS_OF_SIGNUPS = select(*_EVENT_FIELDS).where(
    _EVENTS.c.type == REQUESTED, _EVENTS.c.signup_id.in_(bindparam("signups", expanding=True)))

# Both at once when the requests' signups are known before the read, as a confirmation's are
# (its pending events name their signup): one statement rather than two, each by its index.
_EVENTS_BY_ID_OR_REQUESTS = select(*_EVENT_FIELDS).where(or_(
    and_(_EVENTS.c.campaign_id == bindparam("campaign"),
         _EVENTS.c.id.in_(bindparam("ids", expanding=True))),
    and_(_EVENTS.c.type == REQUESTED,
         _EVENTS.c.signup_id.in_(bindparam("signups", expanding=True)))))


def _event_records(connection, campaign: Campaign, states: list[ConsentState],
                   pending_events: dict, confirmed_signup: int | None = None) -> list[dict]:
    """The event behind each state, preceded for a confirmation by the request it confirmed.

    Only these, not the whole history: anyone can submit anyone's address to the widget, and
    repeated requests must not be able to grow a receipt without bound. ``pending_events``
    are events not written yet, by the id the states give them; the requests of
    ``confirmed_signup`` (a confirmation's) are read with the events, in one statement.
    """
    expiry = {state.event_id: state.expires_at for state in states}
    ids = [i for i in expiry if i not in pending_events]
    # The requests that the given consents confirmed: a confirmation and its request share
    # the signup. Those of the pending events' signups are read with the events themselves.
    read = sorted({row.signup_id for row in pending_events.values()
                   if row.type == GIVEN and row.signup_id is not None}
                  | ({confirmed_signup} if confirmed_signup is not None else set()))
    # On the driver's cursor, which costs a fraction of SQLAlchemy's execution (every receipt
    # reads these).
    if read:
        rows = db.driver_rows(connection, _EVENTS_BY_ID_OR_REQUESTS, {
            "campaign": campaign.id, "ids": ids, "signups": read})
    else:
        rows = db.driver_rows(connection, _EVENTS_BY_ID, {"campaign": campaign.id, "ids": ids})
    rows.extend(pending_events.values())
    signups = sorted({row.signup_id for row in rows
                      if row.type == GIVEN and row.signup_id is not None} - set(read))
    if signups:
        rows.extend(db.driver_rows(connection, _REQUESTS_OF_SIGNUPS, {"signups": signups}))
    by_id = {row.id: row for row in rows if row.id in expiry}
    requests = {}
    for row in rows:
        if row.type == REQUESTED:
            requests.setdefault((row.signup_id, row.purpose, row.network), row)
    records = []
    for state in states:
        event = by_id[state.event_id]
        request = requests.get((event.signup_id, event.purpose, event.network)) \
            if event.type == GIVEN else None
        for each in (request, event):
            if each is None:
                continue
            record = {"purpose": each.purpose, "network": each.network, "type": each.type,
                      "state": _DPV_STATUS[each.type], "time": _iso(each.occurred_at),
                      "actor": each.actor, "method": each.method}
            if each.type == GIVEN:
                record.update(validity=f"P{campaign.validity_days}D",
                              expiresAt=_iso(expiry[each.id]))
            records.append(record)
    return records


def _policy_texts(campaign: Campaign, given: list[ConsentState]) -> dict:
    """ISO/IEC TS 27560's withdrawal method, retention and recipients, as plain statements."""
    networks = [notices.network_label(s.network) for s in given if s.purpose == SOCIAL_MATCHING]
    recipients = (f"{campaign.controller} (controller) and the supporter-management platform "
                  "it uses, which receives the status of each consent")
    if networks:
        recipients += (f"; for social matching, {', '.join(networks)}: each network named "
                       "receives the email address to find the profile")
    return {
        "withdrawalMethod": "One click on the manage link at the foot of every email from the "
                            "campaign, or on the unsubscribe link of a newsletter; or write to "
                            f"{campaign.contact_email}. A withdrawal takes effect at once.",
        "retention": f"Each consent lasts {campaign.validity_days} days unless withdrawn "
                     "earlier. Data copied by social matching is deleted when that consent "
                     "ends. This record is kept as proof of consent (GDPR Art. 7(1)).",
        "recipients": recipients + ".",
    }


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC to the second, as ISO/IEC TS 27560 records times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


# --- web -------------------------------------------------------------------------------------
def _public_document(body: dict):
    response = jsonify(body)
    response.headers["Cache-Control"] = WELL_KNOWN_CACHE_CONTROL
    # Public by design: browser-based verifiers and privacy extensions read them cross-origin.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/jwks.json")
def jwks_document():
    """The public keys that verify receipts and decisions (RFC 7517)."""
    return _public_document(keys.jwks(db.session()))


@bp.get("/.well-known/gpc.json")
def gpc_document():
    """Global Privacy Control support: the service honours ``Sec-GPC: 1``."""
    return _public_document({"gpc": True, "lastUpdate": GPC_LAST_UPDATE})


@bp.app_template_filter("receipt_time")
def receipt_time(value: int | str) -> str:
    """A receipt's time (epoch seconds or ISO 8601) written for the reader's language."""
    # Babel's long format costs some 50 µs (the time zone's name above all), and a receipt
    # shows the same time more than once (boxes given together expire together).
    return _receipt_time(value, str(get_locale()), str(get_timezone()))


@lru_cache(maxsize=256)
def _receipt_time(value: int | str, _locale: str, _timezone: str) -> str:
    moment = (datetime.fromtimestamp(value, timezone.utc) if isinstance(value, int)
              else datetime.fromisoformat(value))
    return format_datetime(moment, "long")


bp.app_template_filter("network_label")(notices.network_label)
