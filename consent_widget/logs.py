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
import random
import re
import sys
import time
from datetime import datetime, timezone
from json.encoder import encode_basestring

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


#: (a second since the epoch, its ISO 8601 text up to the seconds): a line's time is written
#: many times a second, and formatting a datetime cost more than the rest of an access line.
_SECOND: tuple[int, str] = (-1, "")


def _iso_time(created: float) -> str:
    """``created`` in ISO 8601, UTC, to the millisecond, as ``2026-12-04T02:40:55.446+00:00``."""
    global _SECOND
    second, millisecond = divmod(int(created * 1000), 1000)
    cached = _SECOND
    if cached[0] != second:
        # One tuple swapped whole, so that threads never pair a second with another's text.
        cached = _SECOND = (second, datetime.fromtimestamp(second, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{millisecond:03d}+00:00"


def new_request_id() -> str:
    """A new request id: 128 random bits in hex.

    From the process's pseudo-random generator, not the system's: an id names a request in the
    logs and is no secret, and ``os.urandom`` was a system call on every request. The
    generator is seeded afresh in each forked worker, so workers never repeat each other.
    """
    return "%032x" % random.getrandbits(128)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, message, logger, and the request's
    id, method, endpoint, status and duration (in milliseconds) when they are known."""

    _FIELDS = ("request_id", "method", "endpoint", "status", "duration")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, scrubbed."""
        message = record.getMessage()
        entry = {
            "time": _iso_time(record.created),
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
            self.write(self.format(record))
        except Exception:  # a log line must never break the request that wrote it
            self.handleError(record)

    @staticmethod
    def write(line: str) -> None:
        """Write ``line`` and its newline in one ``write()``, and flush."""
        stream = sys.stderr
        stream.write(line + "\n")
        stream.flush()


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


def request_started() -> float | None:
    """When this request began, by ``time.perf_counter()``, as the app's first hook noted it;
    None for a request refused before that hook ran. The access line's duration and the
    request metrics' both count from here."""
    return g.get("request_started")


def _start_request() -> None:
    context = g._get_current_object()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    context.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else new_request_id()
    context.request_started = time.perf_counter()


def _plain_stderr(logger: logging.Logger) -> StderrHandler | None:
    """The one handler a record of ``logger`` would reach, when that is this module's own
    :class:`StderrHandler` with its :class:`JsonFormatter` and no filter on the way; else None.
    """
    found = None
    while logger is not None:
        if logger.filters:
            return None
        for handler in logger.handlers:
            if (found is not None or type(handler) is not StderrHandler or handler.filters
                    or type(handler.formatter) is not JsonFormatter
                    or handler.level > logging.INFO):
                return None
            found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    return found


#: (method, endpoint, status) -> the access line's text around its time, request id and
#: duration. A few dozen endpoints, methods and statuses make every line the service writes.
_ACCESS_TEMPLATES: dict[tuple, str] = {}
_ACCESS_TEMPLATES_MAX = 1024


def _access_template(method: str, endpoint: str | None, status: int) -> str:
    key = (method, endpoint, status)
    template = _ACCESS_TEMPLATES.get(key)
    if template is None:
        # json.dumps writes each field as JsonFormatter's json.dumps of the whole line would;
        # "%" in a client's method is doubled so that it stays text.
        constant = lambda value: json.dumps(value, ensure_ascii=False).replace("%", "%%")  # noqa: E731
        template = (
            '{"time": "%s", "level": "INFO", "message": '
            + constant(f"{method} {endpoint or '(no route)'} {status}")
            + ', "logger": ' + constant(_ACCESS.name) + ', "request_id": %s, "method": '
            + constant(method) + ', "endpoint": ' + constant(endpoint) + ', "status": '
            + constant(status) + ', "duration": %s}')
        if len(_ACCESS_TEMPLATES) < _ACCESS_TEMPLATES_MAX:  # methods are the client's to make up
            _ACCESS_TEMPLATES[key] = template
    return template


def access_line(created: float, request_id: str, method: str, endpoint: str | None,
                status: int, duration: float | None) -> str:
    """The access line exactly as :class:`JsonFormatter` writes the access logger's record of
    these fields (a test holds the two to the same text).

    Filled into a template made once per method, endpoint and status: encoding the whole line
    cost more than the rest of a check's bookkeeping.
    """
    # The json module's own string escaping, and repr, which it writes numbers with.
    return _access_template(method, endpoint, status) % (
        _iso_time(created), encode_basestring(request_id),
        "null" if duration is None else repr(duration))


def _finish_request(response):
    # A request refused before our before_request ran (another hook raised first) still gets one.
    context = g._get_current_object()
    request_id = context.get("request_id")
    if request_id is None:
        request_id = context.request_id = new_request_id()
    # Added, not set: no other part of the app writes this header, and setting one looks for
    # an earlier value to replace.
    response.headers.add(REQUEST_ID_HEADER, request_id)
    started = context.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
    served = request._get_current_object()
    endpoint, method, status = served.endpoint, served.method, response.status_code
    level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
    if not _ACCESS.isEnabledFor(level):
        return response
    handler = _plain_stderr(_ACCESS) if level == logging.INFO else None
    if handler is not None:
        # The default set-up: the line goes to standard error alone. Written here directly,
        # without logging's record, its caller lookup and its dispatch, which cost more than
        # the rest of a request's bookkeeping; any other handler gets the record as usual.
        try:
            handler.write(access_line(time.time(), request_id, method, endpoint, status,
                                      duration))
        except Exception:  # nowhere to report it: standard error is what failed
            pass  # and a log line must never break the request that wrote it
        return response
    # The request's fields are given here, where they are at hand, rather than looked up again
    # by the formatter. The message repeats fields the line holds as they are (the method, an
    # endpoint of the app, a status), so scrubbing it would change nothing.
    _ACCESS.log(level, "%s %s %s", method, endpoint or "(no route)", status, extra={
        "request_id": request_id, "method": method, "endpoint": endpoint,
        "status": status, "duration": duration, "scrubbed": True})
    return response


def init_app(app) -> None:
    """Send the package's logs to standard error as JSON; give every request an id and an
    access line. Call before the other parts, so that the id exists before any of their hooks."""
    _install(app.config["LOG_LEVEL"])
    app.before_request(_start_request)
    app.after_request(_finish_request)
