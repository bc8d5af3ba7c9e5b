"""The console's front pages: its assets and the list of one's campaigns."""
from __future__ import annotations

from flask import redirect, request, send_from_directory, url_for
from flask_login import current_user

from .. import accounts, db
from . import PUBLIC, SIGNED_IN, STATIC_DIR, render, route

#: A year for a URL that names its content's version; an hour otherwise.
_ASSET_MAX_AGE, _UNVERSIONED_MAX_AGE = 365 * 24 * 3600, 3600


@route("/static/<path:filename>", access=PUBLIC, methods=["GET"])
def static(filename):
    """The console's CSS and JavaScript (no third-party script, no CDN)."""
    response = send_from_directory(
        STATIC_DIR, filename,
        max_age=_ASSET_MAX_AGE if request.args.get("v") else _UNVERSIONED_MAX_AGE)
    response.headers["Cache-Control"] = f"public, max-age={response.cache_control.max_age}"
    return response


@route("/", access=SIGNED_IN, methods=["GET"])
def index():
    """One's campaigns; straight to the campaign when there is only one."""
    mine = accounts.memberships(db.session(), current_user.row)
    if len(mine) == 1 and not current_user.is_operator:
        return redirect(url_for("admin.dashboard", slug=mine[0].campaign.slug))
    return render("index.html")


