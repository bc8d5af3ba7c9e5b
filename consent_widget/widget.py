"""The widget: the signup form page, its submission, and the widget's own CSS and JavaScript.

The page is a plain HTML form that works without JavaScript; its script submits it with
``fetch`` so that it also works inside ``<iframe sandbox="allow-scripts">``, where forms cannot be
submitted and the page's origin is ``null``. It sets no cookie and keeps no server session: the
CSRF token is signed (see :mod:`consent_widget.forms`).
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from types import SimpleNamespace
from urllib.parse import urlencode, urlsplit

from flask import (Blueprint, current_app, g, jsonify, render_template, request,
                   send_from_directory, url_for)
from flask_babel import get_locale
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from . import campaigns, db, i18n, ledger, notices, theme, tokens, urls
from .emails import lookup_key
from .forms import SignupForm, allowed_origin
from .i18n import gettext as _
from .models import NEWSLETTER

bp = Blueprint("widget", __name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: A signup is a few hundred bytes; anything this big is not a person filling in the form.
MAX_BODY_BYTES = 16 * 1024
#: Versioned asset URLs change with the file's content, so browsers may keep them for a year.
ASSET_MAX_AGE = 365 * 24 * 3600
UNVERSIONED_ASSET_MAX_AGE = 3600
#: Everything but style-src (which may allow the campaign's theme by its hash) and
#: frame-ancestors (the campaign's sites), which depend on the campaign.
CSP = ("default-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; object-src 'none'")


# --- the form page and its submission ----------------------------------------------------------

@bp.get("/w/<slug>", provide_automatic_options=False)
def page(slug):
    """The signup form of a campaign, in the language of ``?lang=``, the browser or the campaign."""
    campaign = _campaign_or_404(slug)
    offered = _offered_now(campaign, _locale())
    form = SignupForm(campaign=campaign, shown_notices=[notice.id for *_item, notice in offered],
                      data={"lang": _locale(), "origin": _embedding_origin(campaign)})
    return _form_page(campaign, form, 200, offered=offered)


@bp.post("/w/<slug>", provide_automatic_options=False)
def submit(slug):
    """Record a signup (requests and refusals, pending the emailed confirmation) and say so."""
    campaign = _campaign_or_404(slug)
    request.max_content_length = MAX_BODY_BYTES
    try:
        formdata = request.form
    except RequestEntityTooLarge:
        return _too_large()
    if formdata.get("lang") in i18n.LOCALES:
        g.locale = formdata["lang"]
    form = SignupForm(formdata, campaign=campaign)
    if form.trapped:
        # Bots learn nothing from the answer: it is the one a person gets.
        return _thanks(campaign, form.embedding_origin)
    if not form.validate():
        return _invalid(campaign, form, 400 if form.csrf_failed else 422)
    locale = _locale()
    with db.transaction() as session:
        # The texts the form showed never change once recorded: each process keeps those it
        # has read, so this reads nothing but the first time (see notices.by_ids).
        shown = notices.shown(session, campaign, form.shown_notices)
        choices = [ledger.Choice(purpose, network, notice, form.ticked(purpose, network))
                   for purpose, network, notice in _offered(session, campaign, locale, shown)]
        ledger.record_signup(session, campaign, form.email.data, choices,
                             key=lookup_key(current_app.config), locale=locale,
                             origin=form.embedding_origin, gpc=_gpc())
    return _thanks(campaign, form.embedding_origin)


@bp.route("/w/<slug>", methods=["OPTIONS"])
def preflight(slug):
    """The CORS preflight of the widget's ``fetch`` submission (headers added below)."""
    return "", 204


@bp.after_request
def _headers(response):
    """Security headers on every widget response; CORS on the submission only."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint == "widget.static":
        return response
    campaign = g.get("campaign")
    ancestors = " ".join(["'self'", *(campaign.origins if campaign else [])])
    styles = " ".join(["'self'", *([g.theme.csp_hash] if g.get("theme") and g.theme.css else [])])
    response.headers["Content-Security-Policy"] = (f"{CSP}; style-src {styles}; "
                                                   f"frame-ancestors {ancestors}")
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    response.headers["Cache-Control"] = "no-store"
    if request.endpoint in ("widget.submit", "widget.preflight"):
        _cors(response)
    return response


def _cors(response) -> None:
    """Let the widget's own script read the answer, including from a sandboxed (``null``) frame.

    Only our own origin and ``null`` are answered, never with credentials: nothing here uses
    cookies, and no other site has a reason to read what the submission says.
    """
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    base = urlsplit(current_app.config["BASE_URL"])
    if origin not in ("null", f"{base.scheme}://{base.netloc}"):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Accept, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"


def _campaign_or_404(slug: str):
    """The campaign of the URL, which also decides the frame ancestors and default language."""
    campaign = campaigns.find(slug)
    if campaign is None:
        raise NotFound(_("There is no sign-up form at this address. Please check the link."))
    g.campaign = campaign
    g.theme = _previewed_theme(campaign) or theme.of(campaign)
    # Must be set before anything asks flask_babel for the locale, which is then cached.
    g.campaign_locale = campaign.locale
    return campaign


def _previewed_theme(campaign):
    """The look a console user is trying out (``?preview=``, signed by the console for this
    campaign), or None. Its values are validated again like any campaign's."""
    token = request.args.get("preview") if request.method == "GET" else None
    if not token:
        return None
    try:
        payload = tokens.loads(tokens.PREVIEW, token)
    except (tokens.TokenInvalid, tokens.TokenExpired):
        return None
    look = payload.get("look")
    if payload.get("c") != campaign.id or not isinstance(look, dict):
        return None
    return theme.of(SimpleNamespace(**{column: look.get(column) for column in theme.COLUMNS}))


def _embedding_origin(campaign) -> str:
    """The site embedding this page, when the campaign allows it, else "".

    The loader names it in ``?origin=``; a plain or sandboxed iframe (a site builder's embed
    block, WordPress's oEmbed frame) only sends it as the ``Referer`` of the frame's request,
    which browsers cut to the origin across sites by default.
    """
    named = allowed_origin(campaign, request.args.get("origin"))
    if named:
        return named
    referrer = urlsplit(request.referrer or "")
    if referrer.scheme in ("http", "https") and referrer.netloc:
        return allowed_origin(campaign, f"{referrer.scheme}://{referrer.netloc}")
    return ""


def _locale() -> str:
    return str(get_locale())


def _gpc() -> bool:
    """Whether the browser sends the Global Privacy Control signal (``Sec-GPC: 1``)."""
    return request.headers.get("Sec-GPC", "").strip() == "1"


def wants_json() -> bool:
    """The widget's script asks for JSON; a browser submitting the form without it asks for HTML."""
    accept = request.accept_mimetypes
    return accept.accept_json and not accept.accept_html


def _offered(session, campaign, locale: str, shown=(), *, record: bool = True):
    """Each (purpose, network, notice) the widget asks about, with the notice in ``locale``.

    A notice of ``shown`` (those the submitted form's token names, see ``notices.shown``) is
    used when it matches the box, so the ledger records the text that was on the person's screen.
    With ``record=False``, None when a text has no recorded version yet.
    """
    shown = {(n.purpose, n.network): n for n in shown}
    offered = []
    for purpose, network in notices.offered_items(campaign):
        notice = shown.get((purpose, network)) or notices.current_notice(
            session, campaign, purpose, network, locale, record=record)
        if notice is None:
            return None
        offered.append((purpose, network, notice))
    return offered


def _offered_now(campaign, locale: str, shown_ids=()):
    """:func:`_offered` for a page: read without waiting for the write lock, which is taken
    only to record a text shown for the first time (page views far outnumber signups)."""
    with db.reading() as session:
        shown = notices.shown(session, campaign, shown_ids)
        offered = _offered(session, campaign, locale, shown, record=False)
    if offered is None:
        with db.transaction() as session:
            offered = _offered(session, campaign, locale, shown)
    return offered


def _form_page(campaign, form: SignupForm, status: int, summary=(), offered=None):
    if offered is None:
        offered = _offered_now(campaign, _locale(), form.shown_notices)
    newsletter_notice = next(notice for purpose, _n, notice in offered if purpose == NEWSLETTER)
    network_notices = {network: notice for purpose, network, notice in offered
                       if purpose != NEWSLETTER}
    oembed_url = urls.external("/oembed?" + urlencode({"url": urls.widget_url(campaign),
                                                       "format": "json"}))
    return render_template("widget/form.html", campaign=campaign, form=form,
                           newsletter_notice=newsletter_notice, network_notices=network_notices,
                           gpc=_gpc(), oembed_url=oembed_url, summary=summary,
                           theme=g.theme, parent_origin=form.embedding_origin,
                           action=url_for("widget.submit", slug=campaign.slug)), status


def _invalid(campaign, form: SignupForm, status: int):
    """The form again with its errors (HTML), or the errors by field name (JSON)."""
    errors = {name: [str(message) for message in messages]
              for name, messages in form.errors.items()}
    if wants_json():
        return jsonify(ok=False, errors=errors), status
    anchors = {"email": "email", "newsletter": "newsletter",
               "social_matching": "social_matching-0"}
    summary = [(anchors.get(name), message)
               for name, messages in errors.items() for message in messages]
    return _form_page(campaign, form, status, summary)


def _thanks(campaign, parent_origin: str):
    message = _("We have sent you an email with a confirmation link. Nothing is recorded as "
                "consent until you click it.")
    if wants_json():
        return jsonify(ok=True, message=message), 202
    return render_template("widget/thanks.html", campaign=campaign, message=message,
                           theme=g.theme, parent_origin=parent_origin), 200


def _too_large():
    message = _("This form sent more data than a sign-up needs, so it was not read.")
    if wants_json():
        return jsonify(ok=False, errors={"form": [message]}), 413
    return render_template("error.html", status=413, title=_("Too much data"),
                           message=message), 413


# --- the widget's CSS and JavaScript ---------------------------------------------------------

# "_static" cannot be a campaign slug (slugs have no underscore), so it never hides a campaign.
@bp.get("/w/_static/<path:filename>")
def static(filename):
    """The widget's CSS and JavaScript; cached for a year when the URL carries its version."""
    max_age = ASSET_MAX_AGE if request.args.get("v") else UNVERSIONED_ASSET_MAX_AGE
    return send_from_directory(STATIC_DIR, filename, max_age=max_age)


@lru_cache(maxsize=32)
def _digest(path: str, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:12]


#: The app's (script root, asset) -> versioned URL, outside debug: every page names two assets,
#: and an asset changes only with a new release, which restarts the processes. Kept per app,
#: whose URL rules make the URL.
_ASSET_URLS = "consent_widget_asset_urls"


@bp.app_template_global()
def asset_url(filename: str) -> str:
    """The URL of a widget asset, versioned by its content so caches never serve a stale one."""
    app = current_app._get_current_object()
    known = app.extensions.setdefault(_ASSET_URLS, {})
    key = (request.script_root, filename)
    found = known.get(key)
    if found is None or app.debug:  # in debug, an edited asset shows at once
        path = os.path.join(STATIC_DIR, filename)
        found = url_for("widget.static", filename=filename,
                        v=_digest(path, os.stat(path).st_mtime_ns))
        if not app.debug:
            known[key] = found
    return found


@bp.app_template_global()
def page_locale() -> str:
    """The language of the page being rendered, for ``<html lang>``."""
    return _locale()
