"""Embedding a campaign's widget: the snippets to paste, the site-builder guides, and a check
of whether a page's origin may frame the widget."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, request

from .. import framing, guides
from ..embed import describe
from . import CAMPAIGN, render, route


def _service_origin() -> str:
    parts = urlsplit(current_app.config["BASE_URL"])
    return f"{parts.scheme}://{parts.netloc}"


@route("/c/<slug>/embed", access=CAMPAIGN, read="viewer", methods=["GET"])
def embed():
    """The snippets with copy buttons, the guides, and the check of a page URL (``?page=``)."""
    info = describe(g.campaign, current_app.config["BASE_URL"])
    page = request.args.get("page")
    check = None
    if page is not None:
        check = framing.check_page(page, g.campaign.origins, _service_origin())
    status = 400 if check is not None and check.verdict not in (
        framing.ALLOWED, framing.NOT_ALLOWED) else 200
    return render("embed.html", info=info, guides=guides.guides(), check=check,
                  page=(page or "")[:framing.MAX_URL_LENGTH], framing=framing), status
