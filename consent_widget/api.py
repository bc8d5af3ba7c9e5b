"""The platform API under ``/api/v1``: what a campaign's CRM asks before matching anyone.

Views parse and validate the JSON, call the ledger, and answer; the campaign always comes from
the bearer token, so one campaign's token can never reveal another campaign's supporters.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from . import db, ledger, receipts
from .emails import InvalidEmail, lookup_key, normalise, plain_digest
from .errors import ApiError
from .models import DEFAULT_NETWORKS, NEWSLETTER, PURPOSES, SOCIAL_MATCHING, Campaign, Receipt
from .oauth import current_token, require_oauth

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: A single check is a few hundred bytes; anything much larger is not a check.
MAX_CHECK_BODY = 16 * 1024


def _campaign() -> Campaign:
    return db.session().get(Campaign, current_token.campaign_id)


def _json_object(max_bytes: int) -> dict:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "payload_too_large", f"The body may not exceed {max_bytes} bytes.")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send a JSON body (application/json).")
    body = request.get_json(silent=True)
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


def _answer(view: ledger.StateView, purpose: str, network: str) -> dict:
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


@bp.post("/consents/check")
@require_oauth("consents:check")
def check():
    """May the platform process this person's data for exactly this purpose (and network)?"""
    body = _json_object(MAX_CHECK_BODY)
    purpose, network = parse_question(body)
    email, subject_id = body.get("email"), body.get("subject_id")
    if (email is None) == (subject_id is None):
        raise ApiError(400, "invalid_subject", "Give exactly one of email or subject_id.")
    session = db.session()
    campaign = _campaign()
    claims = {}
    if email is not None:
        if not isinstance(email, str):
            raise ApiError(400, "invalid_email", "email must be a string.")
        try:
            address = normalise(email)
        except InvalidEmail as exc:
            raise ApiError(400, "invalid_email", str(exc)) from None
        subject = ledger.find_subject(session, campaign, address, lookup_key(current_app.config))
        claims["email_sha256"] = plain_digest(address)
    else:
        if not isinstance(subject_id, str) or not 0 < len(subject_id) <= 40:
            raise ApiError(400, "invalid_subject", "subject_id must be a subject id string.")
        subject = ledger.subject_by_public_id(session, campaign, subject_id)
        claims["subject_id_asked"] = subject_id
    answer = _answer(ledger.state_of(session, campaign, subject, purpose, network),
                     purpose, network)
    claims.update(answer, iss=current_app.config["BASE_URL"], aud=current_token.client_id,
                  sub=answer["subject_id"], campaign=campaign.slug)
    answer["decision"] = receipts.sign_decision(session, claims)
    session.commit()  # the first decision may have created the signing key
    return jsonify(answer)


@bp.get("/receipts/<receipt_id>")
@require_oauth("receipts:read")
def receipt(receipt_id: str):
    """A receipt of this campaign: the JWS and its decoded claims."""
    row = db.session().scalars(select(Receipt).where(
        Receipt.id == receipt_id[:36], Receipt.campaign_id == current_token.campaign_id)).first()
    if row is None:
        raise ApiError(404, "not_found", "No receipt with this id in this campaign.")
    return jsonify(receipt_id=row.id, jws=row.jws, claims=receipts.decode(row),
                   supersedes=row.supersedes, issued_at=row.issued_at.isoformat())
