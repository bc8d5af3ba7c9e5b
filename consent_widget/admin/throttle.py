"""Limits on guessing at the console's door: sign-in and reset attempts per client address and
per account, counted with the ``limits`` library in the service's rate-limit storage (Redis
when configured, so every instance counts together)."""
from __future__ import annotations

import hashlib
import hmac

from flask import current_app
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

_EXTENSION = "consent_console_throttle"
_SETTINGS = {"login-ip": "RATELIMIT_LOGIN_PER_IP", "login-account": "RATELIMIT_LOGIN_PER_ACCOUNT"}


def _limiter() -> tuple[FixedWindowRateLimiter, FixedWindowRateLimiter]:
    """The shared limiter, and one in this process's memory for when the storage is down."""
    pair = current_app.extensions.get(_EXTENSION)
    if pair is None:
        storage = storage_from_string(current_app.config["RATELIMIT_STORAGE_URL"])
        pair = (FixedWindowRateLimiter(storage), FixedWindowRateLimiter(MemoryStorage()))
        current_app.extensions[_EXTENSION] = pair
    return pair


def _key(value: str) -> str:
    # Neither addresses nor account names are kept in clear in a shared store.
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def too_many(kind: str, value: str) -> bool:
    """Count one attempt of ``kind`` ("login-ip" or "login-account") for ``value``; True when
    the attempt is over the limit and must be refused."""
    shared, local = _limiter()
    key = _key(value.lower())
    refused = False
    for item in parse_all(current_app.config[_SETTINGS[kind]]):
        try:
            allowed = shared.hit(item, "console", kind, key)
        except Exception:  # noqa: BLE001 - an unreachable store must not open the door
            current_app.logger.warning("rate-limit storage unreachable; counting in process")
            allowed = local.hit(item, "console", kind, key)
        refused = refused or not allowed
    return refused


def parse_all(setting: str):
    """Each limit of a setting like ``"10 per minute; 100 per hour"``."""
    return [parse(part) for part in setting.split(";") if part.strip()]
