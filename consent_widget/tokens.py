"""Signed tokens for the links in emails: one signer and salt per purpose.

A token names its campaign and the state it acts on (a signup, or a subject's link version), so
it stops working when that state is superseded, and a token of one purpose or campaign is worth
nothing for another. Expired and invalid tokens raise different exceptions so the page can say
which, and a person with an expired confirmation link knows to sign up again.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM = "confirm"
MANAGE = "manage"
UNSUBSCRIBE = "unsubscribe"
FORM = "form"
#: A look the console's settings page shows in the real widget before it is saved.
PREVIEW = "preview"
_SALTS = {
    CONFIRM: "consent_widget.confirm.v1",
    MANAGE: "consent_widget.manage.v1",
    UNSUBSCRIBE: "consent_widget.unsubscribe.v1",
    FORM: "consent_widget.form-csrf.v1",
    PREVIEW: "consent_widget.theme-preview.v1",
}
_MAX_AGE_SETTINGS = {
    CONFIRM: "CONFIRM_MAX_AGE",
    MANAGE: "MANAGE_MAX_AGE",
    UNSUBSCRIBE: "MANAGE_MAX_AGE",
    FORM: "FORM_MAX_AGE",
    PREVIEW: "FORM_MAX_AGE",
}


class TokenInvalid(Exception):
    """The token was not made by us for this purpose, or names a superseded state."""


class TokenExpired(TokenInvalid):
    """The token was genuine but is older than its purpose allows."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    secret_key = current_app.config["SECRET_KEY"]
    if isinstance(secret_key, list):  # keys being rotated, the newest last (itsdangerous)
        secret_key = tuple(secret_key)
    return _serializer_for(secret_key, purpose)


@lru_cache(maxsize=32)
def _serializer_for(secret_key: str | bytes | tuple, purpose: str) -> URLSafeTimedSerializer:
    # Made once per key and purpose rather than per token: a signup signs half a dozen links.
    # A serializer keeps nothing between calls, so threads may share it.
    return URLSafeTimedSerializer(secret_key, salt=_SALTS[purpose])


def dumps(purpose: str, payload: dict[str, Any]) -> str:
    """Sign ``payload`` for ``purpose``."""
    return _serializer(purpose).dumps(payload)


def loads(purpose: str, token: str) -> dict[str, Any]:
    """Return the payload of a token of ``purpose``; raise TokenExpired or TokenInvalid."""
    max_age = current_app.config[_MAX_AGE_SETTINGS[purpose]]
    if not token or len(token) > 1000:
        raise TokenInvalid()
    try:
        payload = _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenExpired() from None
    except BadSignature:
        raise TokenInvalid() from None
    if not isinstance(payload, dict):
        raise TokenInvalid()
    return payload


def confirm_token(signup) -> str:
    """The token of a signup's confirmation link."""
    return dumps(CONFIRM, {"c": signup.campaign_id, "s": signup.public_id})


def subject_token(purpose: str, subject) -> str:
    """The token of a subject's manage or unsubscribe link, bound to its link version."""
    secret_key = current_app.config["SECRET_KEY"]
    if isinstance(secret_key, list):
        secret_key = tuple(secret_key)
    # A token carries its time to the second, so signing the same payload again within the
    # same second gives the very same token: a confirmation signs the manage link for its
    # email and again for its page.
    return _subject_token(secret_key, purpose, subject.campaign_id, subject.public_id,
                          subject.link_version, int(time.time()))


@lru_cache(maxsize=64)
def _subject_token(secret_key, purpose: str, campaign_id: int, public_id: str,
                   link_version: int, _second: int) -> str:
    return _serializer_for(secret_key, purpose).dumps(
        {"c": campaign_id, "sub": public_id, "v": link_version})
