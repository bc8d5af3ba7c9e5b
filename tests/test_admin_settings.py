"""The settings page: owners change the campaign with the checks of `campaign create`, editors
change the look, a preview shows a look in the real widget without saving it, and a preview
token of another campaign or a forged one changes nothing."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from consent_widget import db, tokens
from consent_widget.models import Campaign, Notice

from console import console, post
from test_mail import parts, queued, sign_up

FORM = {"name": "Marie 2027", "controller": "Association Marie 2027",
        "controller_address": "", "contact_email": "dpo@marie2027.test",
        "policy_url": "https://marie2027.test/privacy", "origins": "https://marie2027.test",
        "networks": ["facebook", "linkedin"], "locale": "fr", "validity_days": "730"}


def _campaign(app) -> Campaign:
    with app.app_context():
        return db.session().scalars(select(Campaign).where(Campaign.slug == "demo")).one()


def _notices(app) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(Notice))


def test_an_owner_renames_the_campaign_and_the_new_texts_are_recorded(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    before = _notices(app)
    response = post(owner, "/admin/c/demo/settings",
                    {**FORM, "name": "Marie <b>2028</b>", "origins": "https://a.test\nhttps://b.test",
                     "networks": ["meetup"]})
    assert response.status_code == 302
    saved = _campaign(app)
    assert (saved.name, saved.origins, saved.networks) == (
        "Marie <b>2028</b>", ["https://a.test", "https://b.test"], ["meetup"])
    # The newsletter's text names the campaign, so each language has a new version.
    assert _notices(app) > before
    page = owner.get("/admin/c/demo/settings").get_data(as_text=True)
    assert "Marie &lt;b&gt;2028&lt;/b&gt;" in page and "<b>2028</b>" not in page
    widget = app.test_client().get("/w/demo").get_data(as_text=True)
    assert "<b>2028</b>" not in widget


def test_bad_settings_are_refused_and_change_nothing(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    for change in ({"origins": "javascript:alert(1)"}, {"origins": "https://x.test;script-src *"},
                   {"origins": "\n".join(f"https://s{i}.test" for i in range(51))},
                   {"contact_email": "nope"}, {"policy_url": "ftp://x.test"},
                   {"networks": ["myspace"]}, {"validity_days": "0"}, {"name": ""}):
        response = post(owner, "/admin/c/demo/settings", {**FORM, **change})
        assert response.status_code == 400, change
    saved = _campaign(app)
    assert saved.origins == ["https://marie2027.test"] and saved.networks == ["facebook",
                                                                              "linkedin"]


def test_editors_change_the_look_but_not_the_campaign(app, campaign):
    editor = console(app, "editor@marie2027.test", slug="demo", role="editor")
    assert post(editor, "/admin/c/demo/settings", {**FORM, "name": "X"}).status_code == 403
    look = {"accent": "#7a1f5c", "font": "serif", "radius": "8", "scheme": "light"}
    low = post(editor, "/admin/c/demo/settings/look", {**look, "accent": "#ffff00",
                                                       "action": "save"})
    assert low.status_code == 400
    assert post(editor, "/admin/c/demo/settings/look", {**look, "action": "save"}) \
        .status_code == 302
    saved = _campaign(app)
    assert (saved.name, saved.theme_accent, saved.theme_radius) == ("Marie 2027", "#7a1f5c", 8)


def test_a_preview_saves_nothing_and_only_a_token_of_this_campaign_counts(app, campaign):
    editor = console(app, "editor@marie2027.test", slug="demo", role="editor")
    page = post(editor, "/admin/c/demo/settings/look",
                {"accent": "#7a1f5c", "font": "serif", "radius": "8", "scheme": "light",
                 "action": "preview"}).get_data(as_text=True)
    assert _campaign(app).theme_accent == ""
    src = re.search(r'<iframe class="preview" src="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "#7a1f5c" in app.test_client().get(src).get_data(as_text=True)
    with app.test_request_context():
        other = tokens.dumps(tokens.PREVIEW, {"c": 999, "look": {"theme_accent": "#7a1f5c"}})
    for token in (other, "forged", src.split("preview=")[1][:-3] + "xyz"):
        widget = app.test_client().get(f"/w/demo?preview={token}").get_data(as_text=True)
        assert "#7a1f5c" not in widget


MARKUP = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_markup_saved_as_a_name_or_controller_is_inert_in_the_email_and_the_widget(
        app, campaign, locale):
    owner = console(app, "owner@marie2027.test", slug="demo")
    response = post(owner, "/admin/c/demo/settings",
                    {**FORM, "name": f"Marie {MARKUP}", "controller": f"Asso {MARKUP}"})
    assert response.status_code == 302
    saved = _campaign(app)
    assert (saved.name, saved.controller) == (f"Marie {MARKUP}", f"Asso {MARKUP}")
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    # A supporter signs up: the confirmation email's HTML part names the campaign, as text.
    sign_up(app, locale=locale)
    [message] = queued(app)
    _text, html = parts(message)
    assert "<img" not in html and "onerror=alert(1)>" not in html
    assert f"Marie {escaped}" in html and f"Asso {escaped}" in html
    # The widget names the campaign and its controller, as text.
    widget = app.test_client().get(f"/w/demo?lang={locale}").get_data(as_text=True)
    assert "<img" not in widget and "onerror=alert(1)>" not in widget
    assert f"Marie {escaped}" in widget and f"Asso {escaped}" in widget
