"""One registry of settings: name, default and help text.

Values come from the defaults below, then ``instance/config.py`` when present, then environment
variables prefixed ``CONSENT_`` (``CONSENT_DATABASE_URL`` sets ``DATABASE_URL``). The README's
configuration reference is checked against this registry by the tests, so a setting cannot be
added without being documented.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

#: The secret a development server uses when none is configured. The app refuses to start with it
#: outside debug or testing, so it can never sign a production receipt link.
DEVELOPMENT_SECRET = "development-only-secret-do-not-deploy"


class ConfigurationError(RuntimeError):
    """The configuration cannot run the service (a missing secret, a value out of range)."""


@dataclass(frozen=True)
class Setting:
    """A configuration setting with its default (a value, or a function of the app) and help."""

    name: str
    default: Any
    help: str


def _instance_path(app, name: str) -> str:
    return os.path.join(app.instance_path, name)


SETTINGS: tuple[Setting, ...] = (
    Setting("SECRET_KEY", DEVELOPMENT_SECRET,
            "Signs the links in emails and the widget's CSRF tokens. Required in production."),
    Setting("LOOKUP_KEY", None,
            "Key of the HMAC-SHA256 used to look supporters up by email; defaults to a key "
            "derived from SECRET_KEY."),
    Setting("DATABASE_URL", lambda app: "sqlite:///" + _instance_path(app, "consent_widget.sqlite3"),
            "SQLAlchemy URL of the database; SQLite in the instance folder by default, "
            "postgresql+psycopg://user:pass@host/db in production."),
    Setting("BASE_URL", "http://127.0.0.1:5000",
            "Public URL of the service, used in emails, receipts and embed code."),
    Setting("MAIL_URL", lambda app: "file://" + _instance_path(app, "outbox"),
            "Where email goes: smtp://user:pass@host:port (options ?starttls=1 or ?ssl=1, "
            "&cafile=/path/ca.pem, &timeout=seconds) or file:///path/to/dir (one .eml file per "
            "message)."),
    Setting("MAIL_FROM", "consent_widget <no-reply@localhost>", "Sender address of every email."),
    Setting("CONFIRM_MAX_AGE", 7 * 24 * 3600,
            "Seconds a confirmation link stays valid."),
    Setting("MANAGE_MAX_AGE", 10 * 365 * 24 * 3600,
            "Seconds a manage or unsubscribe link stays valid (withdrawing must stay as easy as "
            "consenting, so years)."),
    Setting("MAX_CONTENT_LENGTH", 2 * 1024 * 1024,
            "Largest request body in bytes; larger ones are refused (413) before being read."),
    Setting("FORM_MAX_AGE", 2 * 3600, "Seconds a widget form's CSRF token stays valid."),
    Setting("ACCESS_TOKEN_TTL", 3600, "Seconds an API access token stays valid."),
    Setting("DECISION_TTL", 300, "Seconds a signed check decision stays valid (at most 300)."),
    Setting("CONSENT_VALIDITY_DAYS", 730,
            "Default validity of a consent in days, after which its status is expired."),
    Setting("JOBS_INTERVAL", 3600,
            "Seconds between two runs of the worker's scheduled jobs (expiry, purge)."),
    Setting("UNCONFIRMED_RETENTION_DAYS", 7,
            "Days after which the address of a signup that was never confirmed is forgotten."),
    Setting("OUTBOX_MAX_ATTEMPTS", 15,
            "Delivery attempts of an email before it is set aside as dead."),
    Setting("OUTBOX_BACKOFF_BASE", 30,
            "Seconds before the first retry; each retry waits twice as long, up to six hours."),
    Setting("DEV_WORKER", False,
            "Run the outbox worker in a thread of the development server (make run sets it)."),
    Setting("RATELIMIT_STORAGE_URL", "memory://",
            "Where rate-limit counters live: memory:// (this process only) or "
            "redis://host:port/db, shared by every instance."),
    Setting("RATELIMIT_SIGNUP_PER_IP", "60 per minute",
            "Widget submissions allowed per client address (the limits library's notation, "
            "several separated by ';')."),
    Setting("RATELIMIT_SIGNUP_PER_EMAIL", "10 per hour",
            "Widget submissions allowed per submitted email address."),
    Setting("RATELIMIT_LINKS", "60 per minute",
            "Requests to the confirm, manage and unsubscribe pages allowed per client address."),
    Setting("RATELIMIT_TOKEN", "30 per minute",
            "Requests to the OAuth token endpoint allowed per client address."),
    Setting("RATELIMIT_API", "6000 per minute",
            "Platform API requests allowed per OAuth client."),
    Setting("RATELIMIT_LOGIN_PER_IP", "30 per 15 minutes",
            "Console sign-in and password-reset attempts allowed per client address."),
    Setting("RATELIMIT_LOGIN_PER_ACCOUNT", "10 per 15 minutes",
            "Console sign-in attempts allowed per account (address typed), from anywhere."),
    Setting("ADMIN_PASSWORD_MIN_LENGTH", 12,
            "Fewest characters of a console password."),
    Setting("ADMIN_LINK_MAX_AGE", 72 * 3600,
            "Seconds a console set-password or reset link stays valid (it works once)."),
    Setting("ADMIN_INVITATION_DAYS", 7,
            "Days a console invitation stays valid (it works once)."),
    Setting("WEBHOOK_ALLOW_PRIVATE", False,
            "Let webhooks go to loopback and private addresses (the demo CRM, tests). Unsafe in "
            "production: campaign owners could make the worker post into the server's network."),
    Setting("TRUSTED_PROXIES", 0,
            "Number of reverse proxies in front of the app whose X-Forwarded-For is trusted "
            "for the client address (rate limits per address)."),
    Setting("LOG_LEVEL", "INFO",
            "Level of the JSON logs written to standard error (DEBUG, INFO, WARNING, ERROR)."),
)


def defaults(app) -> dict[str, Any]:
    """Return the default value of every setting for ``app``."""
    values = {}
    for setting in SETTINGS:
        value = setting.default
        values[setting.name] = value(app) if isinstance(value, Callable) else value
    return values


def load(app, test_config: dict | None = None) -> None:
    """Fill ``app.config`` from defaults, the instance file and the environment, in that order."""
    app.config.from_mapping(defaults(app))
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env(prefix="CONSENT")
    else:
        app.config.from_mapping(test_config)
    if app.config["DECISION_TTL"] > 300:
        raise ConfigurationError("DECISION_TTL may not exceed 300 seconds (the contract's maximum).")
    if app.config["SECRET_KEY"] == DEVELOPMENT_SECRET and not (app.debug or app.testing):
        raise ConfigurationError(
            "Refusing to start with the development secret: set CONSENT_SECRET_KEY "
            "(or run in debug mode for development)."
        )
