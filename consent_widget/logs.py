"""Structured logs: one JSON object per line on standard error, with the request id of the request
being served, and never an email address, a token or a link in them.

Every request gets an id: a sane incoming ``X-Request-ID`` (set by a proxy in front) is kept,
anything else is replaced by a new one; the id is echoed in the response so a supporter's or a
platform's report can be matched with the log. One access line is written per request, naming
the endpoint (``links.manage``), never the path, because link paths carry tokens.

Log messages of any module may still quote data (an SMTP server's reply names the recipient, a
database error its parameters), so every line is scrubbed before it is written.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from flask import g, has_request_context, request
from flask.logging import default_handler

#: Every logger of the package (``consent_widget.outbox``, the app's own) writes through this one.
LOGGER = "consent_widget"
#: Libraries whose lines are written the same way: the development server's request lines hold
#: link paths (scrubbed here).
NEIGHBOURS = ("werkzeug",)
REQUEST_ID_HEADER = "X-Request-ID"
#: Letters, digits and a few separators: enough for UUIDs and tracing ids, never an address.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Endpoints polled every few seconds by probes and scrapers: logged at DEBUG, not INFO.
QUIET_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "metrics.scrape"})

_SCRUBBERS = (
    # Email addresses, including in an SMTP reply's angle brackets.
    (re.compile(r"[^\s<>\"'@,;:()\[\]]+@[^\s<>\"'@,;:()\[\]]+\.[^\s<>\"'@,;:()\[\]]+"),
     "[email]"),
    # Links, whatever their host: the path of an email link is its credential.
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "[link]"),
    # Paths of the link pages, should a message quote one without its host.
    (re.compile(r"/(confirm|manage|unsubscribe)/[^\s\"'?#]+"), r"/\1/[token]"),
    (re.compile(r"\bBearer\s+\S+", re.IGNORECASE), "Bearer [token]"),
    # Signed tokens (JWS, itsdangerous): a base64url JSON header or payload ("eyJ", or "eJ" once
    # compressed), then dot-separated parts.
    (re.compile(r"\.?\be(?:yJ|J)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+"), "[token]"),
    # Access tokens and secrets: long runs of base64url.
    (re.compile(r"[A-Za-z0-9_-]{32,}"), "[token]"),
)


def scrub(text: str) -> str:
    """Replace email addresses, links and token-like strings in ``text`` with placeholders."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, message, logger, and the request's
    id, method, endpoint, status and duration (in milliseconds) when they are known."""

    _FIELDS = ("request_id", "method", "endpoint", "status", "duration")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, scrubbed."""
        message = record.getMessage()
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
                            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            # An access line is made of known words only (see _finish_request): scrubbing it
            # would cost more than the rest of the line, on every request.
            "message": message if getattr(record, "scrubbed", False) else scrub(message),
            "logger": record.name,
        }
        if has_request_context() and not hasattr(record, "request_id"):
            entry["request_id"] = g.get("request_id")
            entry["method"] = request.method
            entry["endpoint"] = request.endpoint
        for field in self._FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, so redirections made later apply."""

    def handle(self, record: logging.LogRecord):
        """Emit the record if the filters let it through, without the handler's lock.

        Each line is written whole by one ``write()``, which the stream keeps from mixing with
        another thread's; the lock ``logging`` takes around each emit only made the threads of a
        worker wait for one another, on every request's access line.
        """
        passed = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # a filter may give a record to use instead
            record = passed
        if passed:
            self.emit(record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        """Write one formatted line."""
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a log line must never break the request that wrote it
            self.handleError(record)


def _install(level: str) -> None:
    # Flask's default handler would write a second, unstructured copy of each line.
    logging.getLogger(LOGGER).removeHandler(default_handler)
    for name in (LOGGER, *NEIGHBOURS):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
            handler = StderrHandler()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
    logging.getLogger(LOGGER).setLevel(level.upper())


_ACCESS = logging.getLogger(LOGGER + ".access")


def request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return g.get("request_id") if has_request_context() else None


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response):
    # A request refused before our before_request ran (another hook raised first) still gets one.
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = g.request_id
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
    endpoint, method, status = request.endpoint, request.method, response.status_code
    level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
    if _ACCESS.isEnabledFor(level):
        # The request's fields are given here, where they are at hand, rather than looked up
        # again by the formatter. The message repeats fields the line holds as they are (the
        # method, an endpoint of the app, a status), so scrubbing it would change nothing.
        _ACCESS.log(level, "%s %s %s", method, endpoint or "(no route)", status, extra={
            "request_id": g.request_id, "method": method, "endpoint": endpoint,
            "status": status, "duration": duration, "scrubbed": True})
    return response


def init_app(app) -> None:
    """Send the package's logs to standard error as JSON; give every request an id and an
    access line. Call before the other parts, so that the id exists before any of their hooks."""
    _install(app.config["LOG_LEVEL"])
    app.before_request(_start_request)
    app.after_request(_finish_request)
