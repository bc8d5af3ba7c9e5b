"""What a campaign pastes into its site: the loader script, the snippets, and oEmbed.

The loader's source lives in the package's ``embed/`` folder beside the site-builder guides.
"""
from __future__ import annotations

import hashlib
import html
import os
import re
from functools import lru_cache
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import (Blueprint, Response, abort, current_app, jsonify, redirect, request,
                   url_for)

from . import campaigns, db, urls
from .i18n import LOCALES

EMBED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "embed")
LOADER = os.path.join(EMBED_DIR, "embed.js")
DEFAULT_WIDTH, DEFAULT_HEIGHT = 600, 640
#: /embed.js is in every snippet and cannot change its URL: browsers keep it an hour, then ask
#: again with its ETag (a 304 costs a few bytes) while still using the copy they have.
LOADER_MAX_AGE = 3600
LOADER_STALE = 86400
#: /embed.<version>.js changes its URL with its content, so it is kept a year.
VERSIONED_MAX_AGE = 365 * 24 * 3600

bp = Blueprint("embed", __name__)


def describe(campaign, base_url: str) -> dict:
    """The campaign's public URLs and the snippets to paste, as the CLI prints them."""
    base = base_url.rstrip("/")
    widget = f"{base}/w/{campaign.slug}"
    title = html.escape(campaign.name)
    return {
        "slug": campaign.slug,
        "name": campaign.name,
        "widget_url": widget,
        "embed_snippet": (f'<script src="{base}/embed.js" data-campaign="{campaign.slug}" '
                          f'async></script>'),
        "fallback_snippet": f'<noscript><a href="{widget}">{title}</a></noscript>',
        "placeholder_snippet": (f'<div data-consent-campaign="{campaign.slug}">'
                                f'<a href="{widget}">{title}</a></div>\n'
                                f'<script src="{base}/embed.js" async></script>'),
        "iframe_snippet": (f'<iframe src="{widget}" title="{title}" '
                           f'style="width:100%;max-width:40rem;height:48rem;border:0"></iframe>'),
        "oembed_url": f"{base}/oembed?" + urlencode({"url": widget, "format": "json"}),
        "versioned_loader_url": f"{base}/embed.{loader_source()[1]}.js",
        "origins": campaign.origins,
        "networks": campaign.networks,
        "locale": campaign.locale,
        "theme": {"accent": campaign.theme_accent or None, "font": campaign.theme_font,
                  "radius": campaign.theme_radius, "scheme": campaign.theme_scheme},
    }


@lru_cache(maxsize=4)
def _loader_source(mtime_ns: int) -> tuple[bytes, str]:
    with open(LOADER, "rb") as handle:
        source = handle.read()
    return source, hashlib.sha256(source).hexdigest()[:12]


def loader_source() -> tuple[bytes, str]:
    """The loader's bytes and its version (the start of their SHA-256)."""
    return _loader_source(os.stat(LOADER).st_mtime_ns)


def _script(source: bytes, version: str, cache_control: str) -> Response:
    response = Response(source, mimetype="text/javascript")
    response.set_etag(version)
    response.headers["Cache-Control"] = cache_control
    # Any page may load the script; it reads nothing and sends no credentials.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@bp.get("/embed.js")
def loader():
    """The loader of the snippets: cached an hour, then revalidated by its ETag."""
    source, version = loader_source()
    return _script(source, version, f"public, max-age={LOADER_MAX_AGE}, "
                                    f"stale-while-revalidate={LOADER_STALE}")


@bp.get("/embed.<version>.js")
def versioned_loader(version):
    """The loader at a URL that names its content: cached for a year, never revalidated.

    An old version's URL redirects to the current one, so a page that pinned it keeps working.
    """
    source, current = loader_source()
    if version != current:
        return redirect(url_for("embed.versioned_loader", version=current), 302)
    return _script(source, current, f"public, max-age={VERSIONED_MAX_AGE}, immutable")


def _bounded(name: str, default: int) -> int:
    """The oEmbed size ``name`` capped by the consumer's ``max…`` argument (oEmbed 1.0 §2.2)."""
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
    base = urlsplit(current_app.config["BASE_URL"])
    try:
        target = urlsplit(request.args.get("url", "")[:2000])
    except ValueError:
        abort(404, description="not a widget URL of this service")
    match = re.fullmatch(r"/w/([a-z0-9-]{1,64})/?", target.path)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not match:
        abort(404, description="not a widget URL of this service")
    db.read_only()
    campaign = campaigns.by_slug(db.session(), match.group(1))
    if campaign is None:
        abort(404, description="no such campaign")
    width, height = _bounded("maxwidth", DEFAULT_WIDTH), _bounded("maxheight", DEFAULT_HEIGHT)
    widget = urls.widget_url(campaign)
    # A URL pasted with ?lang=en keeps its language in the embed.
    lang = parse_qs(target.query).get("lang", [""])[0]
    if lang in LOCALES:
        widget += "?" + urlencode({"lang": lang})
    frame = (f'<iframe src="{html.escape(widget)}" title="{html.escape(campaign.name)}" '
             f'width="{width}" height="{height}" style="border:0;max-width:100%"></iframe>')
    response = jsonify(version="1.0", type="rich", provider_name="consent_widget",
                       provider_url=current_app.config["BASE_URL"], title=campaign.name,
                       html=frame, width=width, height=height, cache_age=86400)
    # Editors (WordPress, Ghost) fetch this from their server; browsers may read it too.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
