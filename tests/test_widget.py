"""The widget: the form page as people and assistive technology see it, and what a submission
records (requests and refusals, never a consent given before the emailed confirmation)."""
from __future__ import annotations

import base64
import hashlib
import html
import re
import sqlite3
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from consent_widget import db, notices, tokens
from consent_widget.campaigns import create_campaign, update_campaign
from consent_widget.models import Campaign, ConsentEvent, ConsentState, Notice, Signup, Subject
from helpers import widget_form

EMAIL = "ana@example.test"
CAMPAIGN_ORIGIN = "https://marie2027.test"


# --- helpers -----------------------------------------------------------------------------------

def notice_text(app, purpose, network, locale):
    """The current notice text for one box, as the ledger will record it."""
    with app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            return notices.current_notice(session, campaign, purpose, network, locale).text


def element_text(page: str, element_id: str) -> str:
    """The unescaped text of the element with this id (our templates put it on one line)."""
    match = re.search(r'<(\w+)[^>]*\bid="' + re.escape(element_id) + r'"[^>]*>(.*?)</\1>',
                      page, re.S)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(2))


def inputs(page: str) -> list[dict]:
    """Every ``<input>`` of the page as a dict of its attributes (a bare attribute maps to "")."""
    found = []
    for tag in re.findall(r"<input\b[^>]*>", page):
        attributes = {name: html.unescape(value or "")
                      for name, value in re.findall(r'([\w-]+)(?:="([^"]*)")?', tag[6:])}
        found.append(attributes)
    return found


def hidden_fields(page: str) -> dict:
    """The hidden fields of the form (CSRF token, lang, origin), as a browser would send them."""
    return {field["name"]: field.get("value", "") for field in inputs(page)
            if field.get("type") == "hidden"}


def form_data(client, path="/w/demo", **fields):
    """What a person submits after loading the page at ``path``: its hidden fields, an email."""
    page = client.get(path)
    assert page.status_code == 200
    data = {**hidden_fields(page.get_data(as_text=True)), "email": EMAIL}
    data.update(fields)
    return data


def recorded(app) -> dict:
    """Counts of everything a submission writes, to assert that a refused one wrote nothing."""
    with app.app_context():
        session = db.session()
        counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                  for model in (Subject, Signup, ConsentEvent, ConsentState)}
        counts["ledger_seq"] = session.scalar(select(func.sum(Campaign.ledger_seq)))
        return counts


def the_signup(app):
    """The only signup, with its events and states by ``purpose:network``."""
    with app.app_context():
        session = db.session()
        signup = session.scalars(select(Signup)).one()
        events = {e.purpose + ":" + e.network: e for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.signup_id == signup.id))}
        states = {s.purpose + ":" + s.network: s.status
                  for s in session.scalars(select(ConsentState))}
        return signup, events, states


def json_post(client, data, **headers):
    return client.post("/w/demo", data=data, headers={"Accept": "application/json", **headers})


# --- the page ----------------------------------------------------------------------------------

def test_page_is_in_french_for_a_french_campaign_with_the_exact_notices(app, client, campaign):
    page = client.get("/w/demo").get_data(as_text=True)
    assert '<html lang="fr" ' in page
    assert "Marie 2027" in page
    newsletter_fr = notice_text(app, "newsletter", "", "fr")
    assert newsletter_fr != notice_text(app, "newsletter", "", "en")
    assert element_text(page, "newsletter-text") == newsletter_fr
    for index, network in enumerate(["facebook", "linkedin"]):
        assert element_text(page, f"social_matching-{index}-text") == notice_text(
            app, "social_matching", network, "fr")


@pytest.mark.parametrize("query, headers", [
    ("?lang=en", {}),
    ("", {"Accept-Language": "en-GB,en;q=0.9"}),
    ("?lang=en", {"Accept-Language": "fr"}),
])
def test_page_is_in_english_when_asked(app, client, campaign, query, headers):
    page = client.get("/w/demo" + query, headers=headers).get_data(as_text=True)
    assert '<html lang="en" ' in page
    assert element_text(page, "newsletter-text") == notice_text(app, "newsletter", "", "en")
    assert element_text(page, "social_matching-1-text") == notice_text(
        app, "social_matching", "linkedin", "en")
    assert hidden_fields(page)["lang"] == "en"


def test_explicit_french_beats_the_browser_and_unknown_languages_fall_back(app, client, campaign):
    assert '<html lang="fr" ' in client.get(
        "/w/demo?lang=fr", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr" ' in client.get(
        "/w/demo", headers={"Accept-Language": "de"}).get_data(as_text=True)


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)  # the write lock is SQLite's
def test_a_page_view_does_not_wait_for_the_write_lock(app, client, campaign):
    """Page views far outnumber signups: once its texts are recorded, a page only reads, and
    so does the form shown again with its errors."""
    invalid = form_data(client, email="not an address")  # its first view records the texts
    writer = sqlite3.connect(make_url(app.config["DATABASE_URL"]).database, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # a signup holds the write lock
    answers = []

    def view():
        answers.append(client.get("/w/demo").status_code)
        answers.append(client.post("/w/demo", data=invalid).status_code)

    viewer = threading.Thread(target=view)
    viewer.start()
    viewer.join(timeout=10)  # a view that queued for the lock would still be waiting
    answered_while_locked = list(answers)
    writer.rollback()
    viewer.join()
    writer.close()
    assert answered_while_locked == [200, 422]


def test_a_text_shown_for_the_first_time_is_recorded_as_a_new_version(app, client, campaign):
    with app.app_context(), db.transaction() as session:
        session.get(Campaign, campaign.id).name = "Marie 2028"
    page = client.get("/w/demo?lang=en").get_data(as_text=True)
    assert "Marie 2028" in element_text(page, "newsletter-text")
    with app.app_context():
        versions = db.session().scalars(
            select(Notice.version).where(Notice.purpose == "newsletter", Notice.locale == "en")
            .order_by(Notice.version)).all()
    assert versions == [1, 2]
    assert element_text(page, "newsletter-text") == notice_text(app, "newsletter", "", "en")


def test_nothing_is_pre_ticked(client, campaign):
    page = client.get("/w/demo", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    boxes = [field for field in inputs(page) if field.get("type") == "checkbox"]
    assert [box["value"] for box in boxes] == ["y", "facebook", "linkedin"]
    assert not any("checked" in box for box in boxes)


def test_every_box_has_a_label_and_its_notice_as_description(client, campaign):
    page = client.get("/w/demo").get_data(as_text=True)
    assert re.search(r"<fieldset[^>]*>\s*<legend>[^<]+</legend>", page)
    for box in (field for field in inputs(page) if field.get("type") == "checkbox"):
        assert f'<label for="{box["id"]}">' in page
        described = box["aria-describedby"].split()
        assert described[0] == box["id"] + "-text"
        assert element_text(page, described[0]).strip()
        for element_id in described:
            assert f'id="{element_id}"' in page
    email = next(field for field in inputs(page) if field.get("name") == "email")
    assert email["autocomplete"] == "email" and email["maxlength"] == "254"
    assert '<label for="email">' in page


def test_page_links_policy_and_oembed_and_has_no_inline_code(client, campaign):
    page = client.get("/w/demo").get_data(as_text=True)
    assert 'href="https://marie2027.test/privacy"' in page
    assert ('<link rel="alternate" type="application/json+oembed" href="http://consent.test/oembed'
            '?url=http%3A%2F%2Fconsent.test%2Fw%2Fdemo&amp;format=json"') in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"<[^>]+\son[a-z]+=", page)


def test_page_headers_allow_the_campaign_sites_to_frame_it_and_set_no_cookie(client, campaign):
    response = client.get("/w/demo")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://marie2027.test" in csp
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers


def test_embedding_origin_is_kept_only_when_the_campaign_allows_it(client, campaign):
    allowed = client.get("/w/demo?origin=" + CAMPAIGN_ORIGIN).get_data(as_text=True)
    assert hidden_fields(allowed)["origin"] == CAMPAIGN_ORIGIN
    other = client.get("/w/demo?origin=https://elsewhere.test").get_data(as_text=True)
    assert hidden_fields(other)["origin"] == ""


def test_global_privacy_control_is_noted_without_nudging(client, campaign):
    with_gpc = client.get("/w/demo?lang=en", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    assert 'id="gpc-note"' in with_gpc and "Global Privacy Control" in with_gpc
    without = client.get("/w/demo?lang=en").get_data(as_text=True)
    assert 'id="gpc-note"' not in without


def test_unknown_campaign_is_404(client, campaign):
    assert client.get("/w/nobody").status_code == 404
    assert client.post("/w/nobody", data={"email": EMAIL}).status_code == 404


def test_assets_are_served_with_caching_and_the_right_type(client, campaign):
    page = client.get("/w/demo").get_data(as_text=True)
    css = re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1)
    script = re.search(r'<script src="([^"]+)"', page).group(1)
    for url, mimetype in ((css, "text/css"), (script, "javascript")):
        response = client.get(html.unescape(url))
        assert response.status_code == 200
        assert mimetype in response.content_type
        assert "max-age=31536000" in response.headers["Cache-Control"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        response.close()
    assert client.get("/w/_static/../widget.py").status_code == 404


def test_asset_urls_carry_the_files_digest_and_follow_an_edit_in_debug(app, client, campaign,
                                                                     tmp_path, monkeypatch):
    from consent_widget import widget

    def css_url():
        page = client.get("/w/demo").get_data(as_text=True)
        return html.unescape(re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1))

    with open(widget.os.path.join(widget.STATIC_DIR, "widget.css"), "rb") as shipped:
        content = shipped.read()
    assert css_url() == css_url() == \
        "/w/_static/widget.css?v=" + hashlib.sha256(content).hexdigest()[:12]
    # Kept by this app, whose URL rules made it, not by the process for every app.
    assert app.extensions[widget._ASSET_URLS][("", "widget.css")] == css_url()
    # An asset edited while the app runs in debug is named by its new digest at once.
    (tmp_path / "widget.css").write_bytes(content + b"\n/* edited */\n")
    (tmp_path / "widget.js").write_bytes(b"")
    monkeypatch.setattr(widget, "STATIC_DIR", str(tmp_path))
    monkeypatch.setattr(app, "debug", True)
    edited = hashlib.sha256(content + b"\n/* edited */\n").hexdigest()[:12]
    assert css_url() == "/w/_static/widget.css?v=" + edited


# --- submitting --------------------------------------------------------------------------------

def test_a_signup_records_requests_for_ticked_boxes_and_refusals_for_the_others(
        app, client, campaign):
    data = form_data(client, "/w/demo?origin=" + CAMPAIGN_ORIGIN, newsletter="y",
                     social_matching="facebook")
    response = client.post("/w/demo", data=data)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    signup, events, states = the_signup(app)
    assert signup.choices == {"newsletter:": True, "social_matching:facebook": True,
                              "social_matching:linkedin": False}
    assert {item: event.type for item, event in events.items()} == {
        "newsletter:": "requested", "social_matching:facebook": "requested",
        "social_matching:linkedin": "refused"}
    assert "given" not in states.values()
    assert signup.locale == "fr" and signup.origin == CAMPAIGN_ORIGIN and signup.gpc is False


def test_a_signup_with_nothing_ticked_is_valid_and_records_only_refusals(app, client, campaign):
    response = client.post("/w/demo", data=form_data(client))
    assert response.status_code == 200
    _signup, events, states = the_signup(app)
    assert len(events) == 3
    assert {event.type for event in events.values()} == {"refused"}
    assert set(states.values()) == {"refused"}


def test_the_ledger_points_at_the_notice_shown_in_the_language_of_the_form(app, client, campaign):
    client.post("/w/demo", data=form_data(client, "/w/demo?lang=en", social_matching="linkedin"))
    signup, events, _states = the_signup(app)
    assert signup.locale == "en"
    with app.app_context():
        session = db.session()
        shown = {item: session.get(Notice, event.notice_id).text for item, event in events.items()}
    for item, text in shown.items():
        purpose, _, network = item.partition(":")
        assert text == notice_text(app, purpose, network, "en")
        assert events[item].locale == "en"


def test_the_thanks_page_says_nothing_counts_until_confirmed(client, campaign):
    page = client.post("/w/demo", data=form_data(client, "/w/demo?lang=en", newsletter="y"))
    text = page.get_data(as_text=True)
    assert '<html lang="en" ' in text
    assert "Nothing is recorded as consent until you click it" in text


def test_global_privacy_control_is_recorded_on_the_signup(app, client, campaign):
    client.post("/w/demo", data=form_data(client, newsletter="y"), headers={"Sec-GPC": "1"})
    signup, _events, _states = the_signup(app)
    assert signup.gpc is True


def test_an_origin_the_campaign_does_not_allow_is_recorded_as_empty(app, client, campaign):
    client.post("/w/demo", data=form_data(client, origin="https://elsewhere.test"))
    signup, _events, _states = the_signup(app)
    assert signup.origin == ""


def test_fetch_submission_answers_json_202(app, client, campaign):
    response = json_post(client, form_data(client, newsletter="y"))
    assert response.status_code == 202
    assert response.json["ok"] is True and response.json["message"]
    assert recorded(app)["signups"] == 1


def test_fetch_submission_with_bad_input_answers_422_json_and_records_nothing(
        app, client, campaign):
    before = recorded(app)
    response = json_post(client, form_data(client, email="not an address",
                                           social_matching="myspace"))
    assert response.status_code == 422
    assert response.json["ok"] is False
    assert set(response.json["errors"]) == {"email", "social_matching"}
    assert all(isinstance(m, str) and m for ms in response.json["errors"].values() for m in ms)
    assert recorded(app) == before


@pytest.mark.parametrize("fields, status, field", [
    ({"email": "not an address"}, 422, "email"),
    ({"email": ""}, 422, "email"),
    ({"email": "a" * 250 + "@example.test"}, 422, "email"),
    ({"social_matching": ["facebook", "myspace"]}, 422, "social_matching"),
    ({"social_matching": "twitter"}, 422, "social_matching"),  # known, but not offered here
    ({"newsletter": "yes please"}, 422, "newsletter"),
    ({"csrf_token": ""}, 400, "csrf_token"),
    ({"csrf_token": "forged.token.value"}, 400, "csrf_token"),
])
def test_bad_input_is_refused_and_changes_nothing(app, client, campaign, fields, status, field):
    data = form_data(client, **{"newsletter": "y", **fields})
    before = recorded(app)
    response = client.post("/w/demo", data=data)
    assert response.status_code == status
    assert recorded(app) == before
    page = response.get_data(as_text=True)
    assert re.search(r'<div id="error-summary"[^>]*role="alert"[^>]*>\s*<h2>', page)
    assert json_post(client, data).json["errors"].keys() == {field}


def test_a_missing_csrf_token_is_refused(app, client, campaign):
    data = form_data(client)
    del data["csrf_token"]
    before = recorded(app)
    assert client.post("/w/demo", data=data).status_code == 400
    assert recorded(app) == before


def test_field_errors_are_shown_in_text_next_to_the_field(client, campaign):
    response = client.post("/w/demo", data=form_data(client, "/w/demo?lang=en", email="nope"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<html lang="en" ' in page
    assert "Enter a valid email address" in element_text(page, "email-error")
    email = next(field for field in inputs(page) if field.get("name") == "email")
    assert email["aria-invalid"] == "true" and email["value"] == "nope"
    assert '<a href="#email">' in page


def test_an_expired_form_is_refused_with_a_message_to_reload(app, client, campaign):
    data = form_data(client, "/w/demo?lang=en", newsletter="y")
    app.config["FORM_MAX_AGE"] = -1
    before = recorded(app)
    response = json_post(client, data)
    assert response.status_code == 400
    assert response.json["errors"]["csrf_token"] == [
        "This form has expired. Please reload the page and try again."]
    assert recorded(app) == before


def test_a_token_of_another_campaign_is_refused(app, client, campaign):
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")
    data = form_data(client, "/w/other", newsletter="y")
    before = recorded(app)
    response = json_post(client, data)
    assert response.status_code == 400 and "csrf_token" in response.json["errors"]
    assert recorded(app) == before


def test_a_token_signed_for_another_purpose_is_refused(app, client, campaign):
    with app.test_request_context():
        confirm_like = tokens.dumps(tokens.CONFIRM, {"c": campaign.id, "n": "x"})
    before = recorded(app)
    response = json_post(client, form_data(client, csrf_token=confirm_like))
    assert response.status_code == 400
    assert recorded(app) == before


@pytest.mark.parametrize("accept, status", [("text/html", 200), ("application/json", 202)])
def test_a_filled_honeypot_looks_like_success_but_records_nothing(
        app, client, campaign, accept, status):
    before = recorded(app)
    response = client.post("/w/demo", data=form_data(client, newsletter="y", website="spam.test"),
                           headers={"Accept": accept})
    assert response.status_code == status
    assert recorded(app) == before


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_an_oversized_body_is_refused_unread(app, client, campaign, accept):
    data = form_data(client, newsletter="y", padding="x" * (16 * 1024))
    before = recorded(app)
    response = client.post("/w/demo", data=data, headers={"Accept": accept})
    assert response.status_code == 413
    assert recorded(app) == before


# --- CORS for the fetch submission ----------------------------------------------------------------

@pytest.mark.parametrize("origin", ["null", "http://consent.test"])
def test_the_widget_itself_may_read_the_answer_even_from_a_sandboxed_frame(
        client, campaign, origin):
    response = json_post(client, form_data(client), Origin=origin)
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]
    preflight = client.options("/w/demo", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "accept"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"


def test_errors_are_readable_by_the_sandboxed_widget_too(client, campaign):
    response = json_post(client, form_data(client, email="nope"), Origin="null")
    assert response.status_code == 422
    assert response.headers["Access-Control-Allow-Origin"] == "null"


def test_other_sites_may_not_read_the_answer(client, campaign):
    for origin in (CAMPAIGN_ORIGIN, "https://elsewhere.test"):
        response = json_post(client, form_data(client), Origin=origin)
        assert "Access-Control-Allow-Origin" not in response.headers
        preflight = client.options("/w/demo", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert "Access-Control-Allow-Methods" not in preflight.headers


# --- the embedding site and the campaign's theme ------------------------------------------------

def test_a_plain_iframe_names_its_site_by_the_referer_only_when_the_campaign_lists_it(
        client, campaign):
    listed = client.get("/w/demo", headers={"Referer": CAMPAIGN_ORIGIN + "/"}).get_data(
        as_text=True)
    assert hidden_fields(listed)["origin"] == CAMPAIGN_ORIGIN
    assert f'<main class="page" data-parent="{CAMPAIGN_ORIGIN}">' in listed
    for referer in ("https://elsewhere.test/", "javascript:alert(1)", "not a url"):
        other = client.get("/w/demo", headers={"Referer": referer}).get_data(as_text=True)
        assert hidden_fields(other)["origin"] == ""
        assert "data-parent" not in other
    # The loader's ?origin= wins over the referrer.
    named = client.get("/w/demo?origin=" + CAMPAIGN_ORIGIN,
                       headers={"Referer": "https://elsewhere.test/"}).get_data(as_text=True)
    assert hidden_fields(named)["origin"] == CAMPAIGN_ORIGIN


def set_theme(app, **columns):
    """Write theme columns straight into the campaign row, as a migration or an admin might."""
    with app.app_context():
        with db.transaction() as session:
            row = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            for name, value in columns.items():
                setattr(row, name, value)


def test_the_default_theme_adds_no_inline_style(client, campaign):
    response = client.get("/w/demo")
    page = response.get_data(as_text=True)
    assert "<style" not in page and 'data-scheme="auto"' in page
    assert "style-src 'self';" in response.headers["Content-Security-Policy"]


def test_a_campaign_theme_is_one_style_element_allowed_by_its_hash(app, client, campaign):
    set_theme(app, theme_accent="#7a1f5c", theme_font="serif", theme_radius=10,
              theme_scheme="light")
    response = client.get("/w/demo")
    page = response.get_data(as_text=True)
    css = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert css == (':root[data-scheme]{--font:Charter,"Bitstream Charter","Sitka Text",Cambria,'
                   'Georgia,serif;--radius:10px;--accent:#7a1f5c;--focus:#7a1f5c;'
                   '--accent-text:#ffffff}')
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    csp = response.headers["Content-Security-Policy"]
    assert f"style-src 'self' 'sha256-{digest}';" in csp
    assert "'unsafe-inline'" not in csp
    assert 'data-scheme="light"' in page


# Each value fits its column, so the same tampering is possible on SQLite and PostgreSQL.
@pytest.mark.parametrize("columns, injected", [
    ({"theme_accent": "#f;}a{x"}, "}a{x"),
    ({"theme_accent": "#f<s>x"}, "<s>x"),
    ({"theme_font": "x;}*{color:red"}, "color:red"),
    ({"theme_scheme": 'dark" x'}, 'dark" x'),
    ({"theme_radius": -5}, "-5px"),
])
def test_a_tampered_theme_falls_back_to_the_default_and_injects_nothing(
        app, client, campaign, columns, injected):
    set_theme(app, **columns)
    page = client.get("/w/demo").get_data(as_text=True)
    assert "<style" not in page and injected not in page
    assert 'data-scheme="auto"' in page
    boxes = [field for field in inputs(page) if field.get("type") == "checkbox"]
    assert len(boxes) == 3 and not any("checked" in box for box in boxes)


def test_a_form_shown_again_with_its_errors_still_records_the_texts_first_shown(
        app, client, campaign):
    """The texts on the person's screen are those of the page they first loaded: a form
    shown again with an error names them in its new token, even when the campaign's texts
    changed in between, and the corrected submission records them."""
    data = form_data(client, "/w/demo?lang=en", email="nope", newsletter="y")
    with app.test_request_context():
        first = tokens.loads(tokens.FORM, data["csrf_token"])
    with app.app_context():
        with db.transaction() as session:
            demo = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            update_campaign(session, demo, name="Marie 2027, renamed")
    again = client.post("/w/demo", data=data)
    assert again.status_code == 422
    fields = hidden_fields(again.get_data(as_text=True))
    with app.test_request_context():
        second = tokens.loads(tokens.FORM, fields["csrf_token"])
    assert second["t"] == first["t"] and second["n"] != first["n"]
    assert client.post("/w/demo", data={**fields, "email": EMAIL,
                                        "newsletter": "y"}).status_code == 200
    with app.app_context():
        offered = db.session().scalars(select(Signup)).one().offered
        texts = [db.session().get(Notice, notice_id).text for notice_id in offered.values()]
    assert sorted(offered.values()) == sorted(first["t"])
    assert not any("renamed" in text for text in texts)


def test_a_campaign_changed_by_another_instance_is_read_afresh_by_the_next_request(
        app, app_config, campaign):
    # The widget reads its campaign outside any transaction (on SQLite, on a connection each
    # thread keeps): a second server's change must show on the very next request, and a
    # submission after it must chain onto the ledger as the other server left it.
    from consent_widget import create_app
    from consent_widget.chain import verify_chain
    second = create_app(dict(app_config, DATABASE_URL=app.config["DATABASE_URL"]))
    try:
        mine, theirs = app.test_client(), second.test_client()
        assert "Ana 2027" not in mine.get("/w/demo").get_data(as_text=True)
        with second.app_context(), db.transaction() as session:
            found = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            update_campaign(session, found, name="Ana 2027")
        assert "Ana 2027" in mine.get("/w/demo").get_data(as_text=True)
        for client, email in ((mine, "a@example.test"), (theirs, "b@example.test"),
                              (mine, "c@example.test"), (theirs, "a@example.test")):
            response = client.post("/w/demo", data=widget_form(client, email),
                                   headers={"Accept": "application/json"})
            assert response.status_code == 202, response.json
        with app.app_context():
            session = db.session()
            found = session.scalars(select(Campaign).where(Campaign.slug == "demo")).one()
            report = verify_chain(session, found)
            assert report.ok, report
            assert session.scalar(select(func.count()).select_from(Signup)) == 4
    finally:
        with second.app_context():
            db.engine().dispose()
