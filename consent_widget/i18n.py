"""Languages: French and English through Flask-Babel catalogues.

A page's language is ``?lang=`` when given, else the best of ``Accept-Language``, else the
campaign's own locale (the view puts it on ``g.campaign_locale``).
"""
from __future__ import annotations

from flask import g, has_request_context, request
from flask_babel import Babel

LOCALES = ("fr", "en")
DEFAULT_LOCALE = "fr"


def choose_locale(query_lang: str | None, accept_languages, campaign_locale: str | None) -> str:
    """Pick the locale from an explicit choice, the browser's preferences, or the campaign's."""
    if query_lang in LOCALES:
        return query_lang
    if accept_languages is not None:
        # By preference order, on the primary subtag: "en-GB, fr;q=0.5" means English. (Werkzeug's
        # best_match would take the exact "fr" over the regional "en-GB".)
        for tag, quality in accept_languages:
            primary = tag.split("-")[0].lower()
            if quality > 0 and primary in LOCALES:
                return primary
    return campaign_locale if campaign_locale in LOCALES else DEFAULT_LOCALE


def _select_locale() -> str:
    if not has_request_context():
        return DEFAULT_LOCALE
    if "locale" in g:
        return g.locale
    header = request.accept_languages if request.headers.get("Accept-Language") else None
    return choose_locale(request.args.get("lang"), header, g.get("campaign_locale"))


def init_app(app) -> None:
    """Attach Flask-Babel with our catalogues."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    Babel(app, locale_selector=_select_locale)
