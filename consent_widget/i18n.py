"""Languages: French and English through Flask-Babel catalogues.

A page's language is ``?lang=`` when given, else the best of ``Accept-Language``, else the
campaign's own locale (the view puts it on ``g.campaign_locale``).
"""
from __future__ import annotations

from flask import g, has_app_context, has_request_context, request
from flask_babel import Babel, get_locale, get_translations
from jinja2 import pass_context
from markupsafe import Markup

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
    # Flask-Babel's template callables look the catalogue up again for every string, and a
    # receipt shows forty of them; these look it up once per language and context. (This call
    # also makes ``{% trans %}`` newstyle; its gettext and ngettext are replaced just below.)
    app.jinja_env.install_gettext_callables(
        gettext=lambda string: _translations().ugettext(string),
        ngettext=lambda singular, plural, n: _translations().ungettext(singular, plural, n),
        pgettext=lambda context, string: _translations().upgettext(context, string),
        npgettext=lambda context, singular, plural, n: _translations().unpgettext(
            context, singular, plural, n),
        newstyle=True)
    # Jinja reaches those through two more calls per string (``_`` finds ``gettext``, which
    # calls the callable), which cost more than the lookup itself: the two in every template
    # are replaced by functions that do the same in one.
    app.jinja_env.globals.update(_=_template_gettext, gettext=_template_gettext,
                                 ngettext=_template_ngettext)
    app.context_processor(_page_gettext)


@pass_context
def _template_gettext(context, string: str, /, **variables) -> str:
    """A template's ``_()`` and ``{% trans %}``, as Jinja's newstyle gettext does them: a
    translation is markup in an autoescaped template, and always a ``%`` format. The leading
    parameters are positional-only, so that a template variable may have any name."""
    return _formatted(context, _translations().ugettext(string), variables)


def _formatted(context, translated: str, variables: dict) -> str:
    """A translation as Jinja's newstyle gettext returns it: markup in an autoescaped template,
    and a ``%`` format, which leaves a string without ``%`` as it is (most strings, which
    then skip it: building the format's result is a good part of a string's cost)."""
    if context.eval_ctx.autoescape:
        translated = Markup(translated)
    return translated % variables if variables or "%" in translated else translated


def _page_gettext() -> dict:
    """The ``_`` and ``gettext`` of one page that ``render_template`` renders, with the
    catalogue of the page's language found once for the page rather than once per string.

    Finding it costs more than the translation (Flask-Babel looks the locale up through four
    context-local proxies), and a receipt shows forty strings. A page is rendered in a single
    language, so the catalogue current when its rendering starts is the one for all of it;
    the globals above, which find it again per string, serve what renders without
    ``render_template`` (emails) and macros imported without the page's context.
    """
    translations = _translations()

    @pass_context
    def page_gettext(context, string: str, /, **variables) -> str:
        return _formatted(context, translations.ugettext(string), variables)

    return {"_": page_gettext, "gettext": page_gettext}


@pass_context
def _template_ngettext(context, singular: str, plural: str, num: int, /, **variables) -> str:
    """A template's ``ngettext()`` and plural ``{% trans %}``, as Jinja's newstyle does them."""
    variables.setdefault("num", num)
    return _formatted(context, _translations().ungettext(singular, plural, num), variables)


def gettext(string: str, **variables) -> str:
    """Flask-Babel's ``gettext``, with the catalogue found once per context and language (see
    :func:`_translations`) rather than once per string: a confirmation's page labels each of
    its boxes, and a form each of its fields and errors."""
    translated = _translations().ugettext(string)
    return translated % variables if variables else translated


def _translations():
    """Flask-Babel's translations for the current locale, remembered on ``g`` with that locale.

    The locale object is compared by identity: ``force_locale`` (an email in the person's
    language) replaces it, which makes the next lookup fetch the catalogue of the new one.
    """
    if not has_app_context():
        return get_translations()  # Flask-Babel's empty translations: the strings as written
    locale = get_locale()
    cached = g.get("_translations")
    if cached is None or cached[0] is not locale:
        cached = g._translations = (locale, get_translations())
    return cached[1]
