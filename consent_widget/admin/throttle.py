"""Limits on guessing at the console's door: sign-in and reset attempts per client address and
per account, counted in the service's rate-limit counters (Redis when configured, so every
instance counts together; this process's memory while Redis does not answer)."""
from __future__ import annotations

import hashlib
import hmac

from flask import current_app
from limits import parse

from .. import limits

_SETTINGS = {"login-ip": "RATELIMIT_LOGIN_PER_IP", "login-account": "RATELIMIT_LOGIN_PER_ACCOUNT"}


def _key(value: str) -> str:
    # Neither addresses nor account names are kept in clear in a shared store.
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def too_many(kind: str, value: str) -> bool:
    """Count one attempt of ``kind`` ("login-ip" or "login-account") for ``value``; True when
    the attempt is over the limit and must be refused."""
    key = _key(value.lower())
    refused = False
    for item in parse_all(current_app.config[_SETTINGS[kind]]):
        count, _reset_at = limits.hit("console-" + kind, key, item)
        refused = refused or count > item.amount
    return refused


def parse_all(setting: str):
    """Each limit of a setting like ``"10 per minute; 100 per hour"``."""
    return [parse(part) for part in setting.split(";") if part.strip()]
