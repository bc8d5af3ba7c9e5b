"""Translations: every string of the project has a French translation, and languages are chosen
as the contract says."""
from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from werkzeug.datastructures import LanguageAccept

from consent_widget.i18n import choose_locale

ROOT = Path(__file__).resolve().parent.parent
FRENCH_PO = ROOT / "consent_widget" / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
METHODS = [("consent_widget/**.py", "python"), ("consent_widget/templates/**.html", "jinja2"),
           ("consent_widget/templates/**.txt", "jinja2")]


def project_msgids() -> set:
    """Every msgid pybabel extracts from the code and templates (as ``make extract-messages``)."""
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map=METHODS, keywords={"_": None, "gettext": None, "_l": None,
                                                     "lazy_gettext": None, "ngettext": (1, 2)}):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def test_every_string_has_a_french_translation():
    with open(FRENCH_PO, "rb") as handle:
        catalogue = read_po(handle, locale="fr")
    missing = []
    for msgid in project_msgids():
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        entry = catalogue.get(key)
        strings = entry.string if entry is not None and isinstance(entry.string, tuple) else \
            [entry.string if entry is not None else ""]
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(key)
    assert sorted(missing) == []


def test_an_explicit_choice_wins_then_the_browser_then_the_campaign():
    browser_en = LanguageAccept([("en-GB", 1), ("fr", 0.5)])
    assert choose_locale("fr", browser_en, "en") == "fr"
    assert choose_locale(None, browser_en, "fr") == "en"
    assert choose_locale("de", None, "en") == "en"
    assert choose_locale(None, LanguageAccept([("de", 1)]), "en") == "en"
    assert choose_locale(None, None, "xx") == "fr"


def test_templates_follow_a_locale_forced_inside_a_request(app):
    # Templates look their catalogue up once per language (i18n._translations): an email
    # composed in the person's language inside a request must not keep the page's, nor the
    # page the email's afterwards.
    from flask import render_template_string
    from flask_babel import force_locale
    template = "{{ _('Newsletter') }}"
    with app.test_request_context("/?lang=en"):
        assert render_template_string(template) == "Newsletter"
        with force_locale("fr"):
            assert render_template_string(template) == "Lettre d’information"
        assert render_template_string(template) == "Newsletter"


def test_macros_translate_in_the_language_of_the_page_that_calls_them(app):
    # A page finds its catalogue once (i18n._page_gettext) and passes it to the macros it
    # imports with its context; macros imported without it find the catalogue themselves.
    # Either way a macro speaks the language of the page being rendered, forced or not.
    from flask import render_template_string
    from flask_babel import force_locale
    pages = ["{% from 'receipt.html' import item_label" + how + " %}"
             "{{ _('Newsletter') }}/{{ item_label('newsletter', '') }}"
             for how in (" with context", "")]
    with app.test_request_context("/?lang=en"):
        for page in pages:
            assert render_template_string(page) == "Newsletter/Newsletter"
            with force_locale("fr"):
                assert render_template_string(page) == \
                    "Lettre d’information/Lettre d’information"
            assert render_template_string(page) == "Newsletter/Newsletter"


def test_templates_outside_an_app_context_show_the_strings_as_written(app):
    assert app.jinja_env.from_string("{{ _('Newsletter') }}").render() == "Newsletter"


def test_template_translations_are_markup_whose_values_are_escaped(app):
    """``_()``, ``{% trans %}`` and ``ngettext`` in templates behave as Jinja's newstyle
    gettext: translated, formatted with ``%``, the values escaped where the template escapes."""
    from flask import render_template_string
    from flask_babel import force_locale
    network = "<b>Meetup</b> & co"
    with app.test_request_context("/?lang=fr"):
        assert render_template_string(
            "{{ _('Your email address is given to %(network)s to find your profile.', "
            "network=network) }}", network=network) == (
            "Votre adresse e-mail est transmise à &lt;b&gt;Meetup&lt;/b&gt; &amp; co pour "
            "retrouver votre profil.")
        assert render_template_string(
            "{% trans %}Your email address is given to {{ network }} to find your profile."
            "{% endtrans %}", network=network).startswith(
            "Votre adresse e-mail est transmise à &lt;b&gt;Meetup")
        plural = "{{ ngettext('This link works for %(num)d day.', " \
                 "'This link works for %(num)d days.', n) }}"
        assert render_template_string(plural, n=1) == "Ce lien est valable 1 jour."
        assert render_template_string(plural, n=7) == "Ce lien est valable 7 jours."
        with force_locale("en"):
            assert render_template_string(plural, n=7) == "This link works for 7 days."
    # Where a template does not escape (an email's text part), the value comes out as it is.
    text = app.jinja_env.from_string(
        "{% autoescape false %}{{ _('Your email address is given to %(network)s to find your "
        "profile.', network=network) }}{% endautoescape %}")
    with app.test_request_context("/?lang=en"):
        assert text.render(network=network) == (
            "Your email address is given to <b>Meetup</b> & co to find your profile.")


def test_template_translations_are_markup_and_take_any_variable_name(app):
    """A translation is trusted markup in an escaped template (only the values are escaped), a
    ``%`` format even without values, and a template variable may be called anything,
    ``context`` or ``num`` included, as in Jinja's own newstyle gettext."""
    from flask import render_template_string
    with app.test_request_context("/?lang=en"):
        assert render_template_string("{{ _('<b>%(x)s</b>', x=x) }}", x="<i>") == \
            "<b>&lt;i&gt;</b>"
        assert render_template_string("{% trans %}100%{% endtrans %}") == "100%"
        assert render_template_string("{{ _('%(context)s and %(string)s', context=1, "
                                      "string=2) }}") == "1 and 2"
        days = ("{% trans count=n %}{{ count }} day{% pluralize %}{{ count }} days"
                "{% endtrans %}")
        assert [render_template_string(days, n=n) for n in (1, 7)] == ["1 day", "7 days"]
        # An explicit num names the number shown; the count still chooses the form.
        assert render_template_string(
            "{{ ngettext('%(num)s day', '%(num)s days', 3, num='three') }}") == "three days"
