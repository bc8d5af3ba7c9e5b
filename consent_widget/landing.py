"""The service's front page at ``/``: what it is, for whom, and where to go next.

Outside ``/admin``, so it gets no session and sets no cookie, like the widget and the links.
"""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("landing", __name__)

#: No script at all; the widget's stylesheet only.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; "
       "base-uri 'none'; object-src 'none'; frame-ancestors 'none'")


@bp.get("/")
def index():
    """The front page, in French or English (``?lang=``, else ``Accept-Language``)."""
    response = render_template("landing.html")
    return response, {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                      "Referrer-Policy": "strict-origin-when-cross-origin",
                      "Cache-Control": "public, max-age=300", "Vary": "Accept-Language"}
