"""What a campaign pastes into its site: the loader script, the snippets, and oEmbed.

The loader's source lives in the top-level ``embed/`` folder beside the site-builder guides.
"""
from __future__ import annotations

import html
import os
import re
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, current_app, jsonify, request, send_from_directory

from . import campaigns, db

EMBED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "embed")
DEFAULT_WIDTH, DEFAULT_HEIGHT = 600, 640

bp = Blueprint("embed", __name__)


def describe(campaign, base_url: str) -> dict:
    """The campaign's public URLs and the snippets to paste, as the CLI prints them."""
    base = base_url.rstrip("/")
    widget = f"{base}/w/{campaign.slug}"
    return {
        "slug": campaign.slug,
        "name": campaign.name,
        "widget_url": widget,
        "embed_snippet": f'<script src="{base}/embed.js" data-campaign="{campaign.slug}" async></script>',
        "iframe_snippet": (f'<iframe src="{widget}" title="{html.escape(campaign.name)}" '
                           f'style="width:100%;max-width:40rem;height:40rem;border:0"></iframe>'),
        "oembed_url": f"{base}/oembed?" + urlencode({"url": widget, "format": "json"}),
        "origins": campaign.origins,
        "networks": campaign.networks,
        "locale": campaign.locale,
    }


@bp.get("/embed.js")
def loader():
    """The loader script; cacheable for a day, as it rarely changes and carries no data."""
    response = send_from_directory(EMBED_DIR, "embed.js", mimetype="text/javascript",
                                   max_age=86400)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _bounded(name: str, default: int) -> int:
    value = request.args.get(name, "")
    if not value:
        return default
    if not re.fullmatch(r"\d{1,5}", value) or int(value) < 1:
        abort(400, description=f"{name} must be a positive whole number")
    return min(default, int(value))


@bp.get("/oembed")
def oembed():
    """oEmbed 1.0 (``type: rich``) for widget URLs; 404 for others, 501 for formats but JSON."""
    fmt = request.args.get("format", "json")
    if fmt != "json":
        abort(501, description="only format=json is supported")
    url = request.args.get("url", "")
    base = urlsplit(current_app.config["BASE_URL"])
    target = urlsplit(url[:2000])
    match = re.fullmatch(r"/w/([a-z0-9-]{1,64})/?", target.path)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not match:
        abort(404, description="not a widget URL of this service")
    campaign = campaigns.by_slug(db.session(), match.group(1))
    if campaign is None:
        abort(404, description="no such campaign")
    width, height = _bounded("maxwidth", DEFAULT_WIDTH), _bounded("maxheight", DEFAULT_HEIGHT)
    widget = current_app.config["BASE_URL"].rstrip("/") + f"/w/{campaign.slug}"
    frame = (f'<iframe src="{widget}" title="{html.escape(campaign.name)}" width="{width}" '
             f'height="{height}" style="border:0;max-width:100%"></iframe>')
    return jsonify(version="1.0", type="rich", provider_name="consent_widget",
                   provider_url=current_app.config["BASE_URL"], title=campaign.name,
                   html=frame, width=width, height=height)
