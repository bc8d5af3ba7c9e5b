"""Errors to HTTP in one place: JSON under ``/api`` and ``/oauth``, an HTML page elsewhere.

No database text or traceback ever reaches a client; unexpected errors are logged and answered
with a generic message.
"""
from __future__ import annotations

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError


class ApiError(Exception):
    """An API error with a stable code and a message for the integrator."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/oauth/", "/.well-known/", "/oembed"))


def api_error_response(status: int, code: str, message: str):
    """The API's one error shape: ``{"error": code, "message": message}``."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def _handle_api_error(exc: ApiError):
    return api_error_response(exc.status, exc.code, exc.message)


def _handle_http(exc: HTTPException):
    if _wants_json():
        code = (exc.name or "error").lower().replace(" ", "_")
        response = api_error_response(exc.code or 500, code, exc.description or exc.name)
        for name in ("Allow", "Retry-After", "WWW-Authenticate"):
            if exc.get_response().headers.get(name):
                response.headers[name] = exc.get_response().headers[name]
        return response
    # Werkzeug's stock descriptions are English; the page's own translated title says it better.
    message = None if exc.description == type(exc).description else exc.description
    return render_template("error.html", status=exc.code, title=exc.name,
                           message=message), exc.code


def _handle_unexpected(exc: Exception):
    from flask import current_app
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return _handle_http(InternalServerError())


def init_app(app) -> None:
    """Register the handlers."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http)
    if not app.testing:
        app.register_error_handler(Exception, _handle_unexpected)
