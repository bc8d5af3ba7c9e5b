"""The platform API under ``/api/v1``: what a campaign's CRM asks before matching anyone.

Views parse and validate the JSON, call the ledger, and answer; the campaign always comes from
the bearer token, so one campaign's token can never reveal another campaign's supporters.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from json.encoder import encode_basestring, encode_basestring_ascii

from authlib.integrations.flask_oauth2 import current_token
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from werkzeug.wsgi import get_content_length

from . import batch, db, events, keys, metrics, oauth, openapi, receipts, state
from .emails import InvalidEmail, lookup_hmac, lookup_key, normalise, plain_digest
from .errors import ApiError
from .models import (DEFAULT_NETWORKS, NEWSLETTER, PURPOSES, SOCIAL_MATCHING, Campaign, Receipt,
                     utcnow)
from .oauth import require_oauth

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: A single check is a few hundred bytes; anything much larger is not a check.
MAX_CHECK_BODY = 16 * 1024
#: 10,000 addresses of ordinary length fit in well under a megabyte; MAX_CONTENT_LENGTH still
#: applies first.
MAX_BATCH_BODY = 2 * 1024 * 1024
#: The scope a check needs.
CHECK_SCOPE = "consents:check"
#: The kind of token the purge audit signs (RFC 8725: one ``typ`` per kind of claim set).
PURGE_STATEMENT_TYP = "purge-statement+jwt"
MAX_EVENTS_PAGE = 1000
#: A cursor is a ledger position; anything longer than this is not one.
_MAX_CURSOR_DIGITS = 18


@bp.before_request
def _reads_only() -> None:
    # Every API call reads the state; none writes but the first decision ever signed (it creates
    # the signing key), so checks run side by side instead of one at a time on SQLite. Hooks
    # run before the views, and so before the rate limit that wraps each view and reads the
    # token's client.
    db.read_only()


def _signed(claims: dict | bytes, typ: str) -> str:
    """``claims`` (a dict, or its canonical JSON as bytes) signed as a ``typ`` token, in this
    request's read-only transaction.

    While this process knows the current key (:func:`keys.sign_cached`), no session is opened.
    Before the first signing key exists, the key is written in a transaction of its own (the
    request's, begun as a read, could not write on SQLite once another writer committed, as a
    concurrent first check would), then the request reads afresh and signs with it.
    """
    token = keys.sign_cached(db.engine(), claims, typ)
    if token is not None:
        return token
    session = db.session()
    try:
        return keys.sign(session, claims, typ, create_key=False)
    except keys.NoSigningKey:
        with db.writing() as writer:
            # On SQLite, a concurrent first check that made it meanwhile is seen here. On
            # PostgreSQL both may make one: the newer signs, and both are published.
            keys.active_key(writer)
        session.commit()  # ends the read: the next one sees the key
        return keys.sign(session, claims, typ, create_key=False)


def _campaign() -> Campaign:
    return db.session().get(Campaign, current_token.campaign_id)


def _is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON as werkzeug's ``Request.is_json`` decides it
    (``application/json`` or ``application/*+json``, parameters and case aside)."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


def _json_object(max_bytes: int) -> dict:
    # Read from the WSGI environ rather than through ``request.content_length``, ``is_json``
    # and ``get_json``: their headers object, parsed content type and caches cost a check
    # more than its consent read; the body itself is still werkzeug's (limited, cached).
    served = request._get_current_object()
    environ = served.environ
    length = get_content_length(environ)
    if length is not None and length > max_bytes:
        raise ApiError(413, "payload_too_large", f"The body may not exceed {max_bytes} bytes.")
    if not _is_json(environ.get("CONTENT_TYPE", "")):
        raise ApiError(415, "unsupported_media_type", "Send a JSON body (application/json).")
    if length is None:
        # A body without a length (chunked, as a server that terminates the input passes it
        # on) is read only as far as the limit: past it, the same 413 as a declared length.
        data = served.stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ApiError(413, "payload_too_large",
                           f"The body may not exceed {max_bytes} bytes.")
    else:
        data = served.get_data(cache=True)
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deep enough to exhaust the parser
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def parse_question(body: dict) -> tuple[str, str]:
    """Validate ``purpose`` and ``network``; return them with "" for no network."""
    purpose = body.get("purpose")
    if purpose not in PURPOSES:
        raise ApiError(400, "invalid_purpose", f"purpose must be one of {', '.join(PURPOSES)}.")
    network = body.get("network")
    if purpose == SOCIAL_MATCHING:
        if network not in DEFAULT_NETWORKS:
            raise ApiError(400, "invalid_network", "social_matching needs network, one of "
                                                   f"{', '.join(DEFAULT_NETWORKS)}.")
    elif network not in (None, ""):
        raise ApiError(400, "invalid_network", f"{NEWSLETTER} takes no network.")
    return purpose, network or ""


def _is_subject_id(value) -> bool:
    # Subject ids are "sub_" + URL-safe base64: printable ASCII, so a lone surrogate, a NUL
    # (which PostgreSQL cannot store) or any other text the database driver cannot take is
    # refused here, alike on every database, rather than failing in the query.
    return (isinstance(value, str) and 0 < len(value) <= 40 and value.isascii()
            and value.isprintable())


def _answer(view: state.StateView, purpose: str, network: str) -> dict:
    # A batch's answers have these fields too, written by _answers_json without this dict.
    return {
        "allowed": view.allowed,
        "status": view.status,
        "purpose": purpose,
        "network": network or None,
        "subject_id": view.subject_id,
        "receipt_id": view.receipt_id,
        "given_at": view.given_at.isoformat() if view.given_at else None,
        "notice_version": view.notice_version,
    }


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _answers_json(states: list[state.StateView], purpose: str, network: str) -> bytes:
    """``keys.canonical_json([_answer(view, purpose, network) for view in states])``, the same
    bytes, written straight from the views.

    Building a dict per entry and encoding the lot took as long as a batch's SQL. Here each
    answer fills the canonical template (sorted keys, no spaces) with only the fields that
    differ from one entry to the next, each escaped by the function the json module's encoder
    escapes strings with (``ensure_ascii=False``, as canonical_json). A test holds the two to
    the same bytes for every kind of answer: a field added to :func:`_answer` must come here.
    """
    template = ('{"allowed":%s,"given_at":%s,"network":' + _json_text(network or None)
                + ',"notice_version":%s,"purpose":' + _json_text(purpose)
                + ',"receipt_id":%s,"status":%s,"subject_id":%s}')
    text = _json_text
    answers = []
    add = answers.append
    for view in states:
        status, subject_id, receipt_id, given_at, notice_version = view
        add(template % ("true" if view.allowed else "false",
                        text(given_at.isoformat() if given_at else None),
                        "null" if notice_version is None else notice_version,
                        text(receipt_id), text(status), text(subject_id)))
    return ("[" + ",".join(answers) + "]").encode("utf-8")


def _question(body: dict) -> tuple[str, str, str | None, str | None]:
    """A single check's question: purpose, network, and the normalised email or the subject
    id (the other None)."""
    purpose, network = parse_question(body)
    email, subject_id = body.get("email"), body.get("subject_id")
    if (email is None) == (subject_id is None):
        raise ApiError(400, "invalid_subject", "Give exactly one of email or subject_id.")
    if email is not None:
        if not isinstance(email, str):
            raise ApiError(400, "invalid_email", "email must be a string.")
        try:
            return purpose, network, normalise(email), None
        except InvalidEmail as exc:
            raise ApiError(400, "invalid_email", str(exc)) from None
    if not _is_subject_id(subject_id):
        raise ApiError(400, "invalid_subject", "subject_id must be a subject id string.")
    return purpose, network, None, subject_id


def _ascii_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _answer_body(view: state.StateView, purpose: str, network: str, decision: str) -> str:
    """The body ``jsonify`` makes of a single check's answer (:func:`_answer` with its
    ``decision``), the same text, written straight from the view.

    Through Flask's JSON provider, a dict made and encoded cost more than the answer's query;
    here the fields fill the template of its output (sorted keys, no spaces, ASCII escapes,
    a final newline), each escaped by the json module's own function. A test holds the two
    to the same text: a field added to :func:`_answer` must come here.
    """
    status, subject_id, receipt_id, given_at, notice_version = view
    text = _ascii_text
    return ('{"allowed":%s,"decision":%s,"given_at":%s,"network":%s,"notice_version":%s,'
            '"purpose":%s,"receipt_id":%s,"status":%s,"subject_id":%s}\n') % (
        "true" if view.allowed else "false", text(decision),
        text(given_at.isoformat() if given_at else None), text(network or None),
        "null" if notice_version is None else notice_version, text(purpose),
        text(receipt_id), text(status), text(subject_id))


def _decision_payload(view: state.StateView, purpose: str, network: str, asked: tuple[str, str],
                      iss: str | None, aud: str | None, campaign: str, iat: int, exp: int,
                      jti: str) -> bytes:
    """The canonical JSON of a single check's decision claims (:func:`_answer`, the question
    ``asked`` as ``(name, value)``, ``iss``, ``aud``, ``sub``, ``campaign``, ``iat``, ``exp``,
    ``jti``), as ``keys.canonical_json(receipts.decision_claims(claims))`` writes it: the same
    bytes, written straight from the view.

    As with :func:`_answer_body`: a dict of the claims made, filtered and sorted only to be
    encoded cost a check more than its answer's query. Registered claims given as None are left
    out, as :func:`receipts.decision_claims` leaves them. A test holds the two to the same
    bytes for every kind of answer: a claim added to the decision must come here.
    """
    status, subject_id, receipt_id, given_at, notice_version = view
    text = _json_text
    # Sorted keys: the question asked is email_sha256 (after campaign) or subject_id_asked
    # (last); sub, the one registered claim that is None for an unknown subject, after status.
    email = asked[0] == "email_sha256"
    fields = ['{"allowed":', "true" if view.allowed else "false"]
    if aud is not None:
        fields += [',"aud":', text(aud)]
    fields += [',"campaign":', text(campaign)]
    if email:
        fields += [',"email_sha256":', text(asked[1])]
    fields += [',"exp":', str(exp), ',"given_at":',
               text(given_at.isoformat() if given_at else None), ',"iat":', str(iat)]
    if iss is not None:
        fields += [',"iss":', text(iss)]
    fields += [',"jti":', text(jti), ',"network":', text(network or None),
               ',"notice_version":', "null" if notice_version is None else str(notice_version),
               ',"purpose":', text(purpose), ',"receipt_id":', text(receipt_id),
               ',"status":', text(status)]
    if subject_id is not None:
        fields += [',"sub":', text(subject_id)]
    fields += [',"subject_id":', text(subject_id)]
    if not email:
        fields += [',"subject_id_asked":', text(asked[1])]
    fields.append("}")
    return "".join(fields).encode("utf-8")


@bp.post("/consents/check")
def check():
    """May the platform process this person's data for exactly this purpose (and network)?

    The bearer token is authenticated as every API request's is (:data:`require_oauth`), except
    when this process has it cached (:func:`oauth.cached_token`): then the revocation counter
    that confirms it is read in the statement that reads the answer, and only if it moved is
    the token authenticated again, before anything is answered.
    """
    cached = oauth.cached_token(CHECK_SCOPE)
    token = cached[0] if cached is not None else require_oauth.authenticate(CHECK_SCOPE)
    try:
        purpose, network, address, subject_id = _question(_json_object(MAX_CHECK_BODY))
    except ApiError:
        if cached is not None:  # a token refused since it was cached is answered as refused
            require_oauth.authenticate(CHECK_SCOPE)
        raise
    app = current_app._get_current_object()  # one look-up of the proxy, not three
    if address is not None:
        by = {"email_hmac": lookup_hmac(lookup_key(app.config), address)}
        asked = ("email_sha256", plain_digest(address))
    else:
        by = {"public_id": subject_id}
        asked = ("subject_id_asked", subject_id)
    counter, view = state.counted_lookup(db.reader(), token.campaign_id, purpose, network,
                                         **by)
    if cached is not None and counter != cached[1]:
        token = require_oauth.authenticate(CHECK_SCOPE)  # 401 if it was revoked meanwhile
    issued = int(time.time())
    decision = _signed(_decision_payload(
        view, purpose, network, asked, iss=app.config["BASE_URL"], aud=token.client_id,
        campaign=token.campaign_slug, iat=issued, exp=issued + app.config["DECISION_TTL"],
        jti=receipts.new_jti()), receipts.DECISION_TYP)
    metrics.count_decisions([view])
    return app.response_class(_answer_body(view, purpose, network, decision),
                              mimetype="application/json")


@bp.get("/receipts/<receipt_id>")
@require_oauth("receipts:read")
def receipt(receipt_id: str):
    """A receipt of this campaign: the JWS and its decoded claims."""
    row = db.session().scalars(select(Receipt).where(
        Receipt.id == receipt_id, Receipt.campaign_id == current_token.campaign_id)).first() \
        if len(receipt_id) <= 36 and receipt_id.isascii() else None
    if row is None:
        raise ApiError(404, "not_found", "No receipt with this id in this campaign.")
    return jsonify(receipt_id=row.id, jws=row.jws, claims=receipts.decode(row),
                   supersedes=row.supersedes, issued_at=row.issued_at.isoformat())


def _sha256_json(value) -> str:
    return hashlib.sha256(keys.canonical_json(value)).hexdigest()


def _batch_question(body: dict) -> tuple[str, str, str, list[str], list[state.StateView]]:
    """Validate a batch body and answer it: purpose, network, entry kind, entries, states."""
    purpose, network = parse_question(body)
    given = [name for name in ("emails", "subject_ids") if name in body]
    if len(given) != 1:
        raise ApiError(400, "invalid_subject", "Give exactly one of emails or subject_ids.")
    kind = given[0]
    entries = body[kind]
    if not isinstance(entries, list) or not entries:
        raise ApiError(400, "invalid_batch", f"{kind} must be a non-empty array.")
    if len(entries) > batch.MAX_ENTRIES:
        raise ApiError(413, "batch_too_large",
                       f"A batch holds at most {batch.MAX_ENTRIES} entries; split it.")
    session, campaign_id = db.session(), current_token.campaign_id
    if kind == "emails":
        addresses = []
        for index, email in enumerate(entries):
            try:
                if not isinstance(email, str):
                    raise InvalidEmail("not a string")
                addresses.append(normalise(email))
            except InvalidEmail as exc:
                raise ApiError(400, "invalid_email", f"emails[{index}]: {exc}") from None
        states = batch.states_by_email(session, campaign_id, purpose, network, addresses,
                                       lookup_key(current_app.config))
    else:
        for index, subject_id in enumerate(entries):
            if not _is_subject_id(subject_id):
                raise ApiError(400, "invalid_subject",
                               f"subject_ids[{index}] must be a subject id string.")
        states = batch.states_by_subject(session, campaign_id, purpose, network, entries)
    return purpose, network, kind, entries, states


def _signed_claims(purpose: str, network: str, kind: str, count: int) -> dict:
    # The digest of the body exactly as received binds the signature to this list and no other.
    return {"iss": current_app.config["BASE_URL"], "aud": current_token.client_id,
            "campaign": current_token.campaign_slug, "purpose": purpose, "network": network or None,
            "entries": kind, "count": count,
            "request_sha256": hashlib.sha256(request.get_data()).hexdigest()}


@bp.post("/consents/check-batch")
@require_oauth("consents:check")
def check_batch():
    """Up to 10,000 checks at once, answered in order under one signed decision."""
    purpose, network, kind, _, states = _batch_question(_json_object(MAX_BATCH_BODY))
    results = _answers_json(states, purpose, network)
    claims = _signed_claims(purpose, network, kind, len(states))
    claims.update(allowed_count=sum(1 for view in states if view.allowed),
                  results_sha256=hashlib.sha256(results).hexdigest())
    decision = _signed(receipts.decision_claims(claims), receipts.DECISION_TYP)
    metrics.count_decisions(states)
    # The results go out as the very bytes that were digested: serialising 10,000 answers a
    # second time would cost as much as looking them up.
    body = (b'{"decision":' + json.dumps(decision).encode("ascii") + b',"results":' + results
            + b"}\n")
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/consents/purge-audit")
@require_oauth("consents:check")
def purge_audit():
    """Which of the people a platform holds matched data about must it purge? Signed."""
    purpose, network, kind, entries, states = _batch_question(_json_object(MAX_BATCH_BODY))
    field = "email" if kind == "emails" else "subject_id"
    # The entry as submitted comes last, so a subject id asked about stays in the answer even
    # when it names no one.
    purge = [{"index": index, "status": view.status, "subject_id": view.subject_id,
              field: entries[index]}
             for index, view in enumerate(states) if not view.allowed]
    claims = _signed_claims(purpose, network, kind, len(entries))
    issued = utcnow()
    claims.update(purge_count=len(purge), purge_sha256=_sha256_json(purge),
                  iat=int(issued.timestamp()), jti=str(uuid.uuid4()),
                  statement=f"Of {len(entries)} {kind} checked, {len(purge)} have no valid "
                            f"consent to {purpose}{' on ' + network if network else ''} "
                            f"at {issued.isoformat(timespec='seconds')} and must be purged.")
    statement = _signed(claims, PURGE_STATEMENT_TYP)
    return jsonify(purpose=purpose, network=network or None, checked=len(entries),
                   purge=purge, statement=statement)


@bp.get("/events")
@require_oauth("events:read")
def event_feed():
    """The campaign's consent events after a cursor, oldest first."""
    after = request.args.get("after", "0")
    if not (after.isascii() and after.isdigit() and len(after) <= _MAX_CURSOR_DIGITS):
        raise ApiError(400, "invalid_cursor", "after must be a cursor from an earlier page.")
    limit = request.args.get("limit", "100")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_EVENTS_PAGE):
        raise ApiError(400, "invalid_limit", f"limit must be 1 to {MAX_EVENTS_PAGE}.")
    items, position = events.feed(db.session(), _campaign(), int(after), int(limit))
    return jsonify(events=items, next=str(position), has_more=len(items) == int(limit))


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi.document(current_app.config["BASE_URL"]))
