"""The console's embed page: the snippets with their copy buttons, the site-builder guides, and
the check of whether a page's origin may frame the widget."""
from __future__ import annotations

import html
import re

import pytest

from consent_widget import campaigns, db, framing, guides
from consent_widget.embed import describe

from console import console

XSS = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>"
PAGE = "/admin/c/demo/embed"


def _code_blocks(page: str) -> dict:
    """The text of every ``<pre><code id=...>`` of the page, unescaped as a browser shows it."""
    return {ident: html.unescape(text) for ident, text in
            re.findall(r'<pre><code id="([^"]+)">(.*?)</code></pre>', page, re.S)}


def _result(page: str) -> str:
    match = re.search(r'<p id="check-result"[^>]*>(.*?)</p>', page, re.S)
    assert match, "no result of the check on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())


@pytest.fixture
def owner(app, campaign):
    return console(app, "owner@marie2027.test", slug="demo")


@pytest.mark.parametrize("role", ["owner", "editor", "viewer"])
def test_every_member_sees_the_snippets_to_paste_as_the_command_prints_them(app, campaign,
                                                                           role):
    member = console(app, f"{role}@marie2027.test", slug="demo", role=role)
    response = member.get(PAGE + "?lang=en")
    assert response.status_code == 200
    with app.app_context():
        expected = describe(campaigns.by_slug(db.session(), "demo"), app.config["BASE_URL"])
    blocks = _code_blocks(response.get_data(as_text=True))
    assert blocks == {
        "snippet-script": expected["embed_snippet"] + "\n" + expected["fallback_snippet"],
        "snippet-placeholder": expected["placeholder_snippet"],
        "snippet-iframe": expected["iframe_snippet"],
        "snippet-oembed": expected["widget_url"],
    }


def test_each_snippet_has_a_copy_button_and_a_status_for_its_message(owner):
    page = owner.get(PAGE + "?lang=en").get_data(as_text=True)
    for ident in _code_blocks(page):
        # Hidden until admin.js wires it: without JavaScript, the text is selected by hand.
        assert re.search(rf'<button type="button"[^>]* data-copy="{ident}" '
                         rf'data-copied="Copied" hidden>', page), ident
        assert f'<span id="{ident}-status" role="status"' in page, ident
    assert "<script" not in page.split("<main", 1)[1].split("</main>")[0]


def test_the_snippets_are_shown_as_text_never_as_markup(owner):
    page = owner.get(PAGE).get_data(as_text=True)
    # The snippets' tags are text on the page: no script of the loader runs in the console.
    assert '<script src="http://consent.test/embed.js"' not in page
    assert "&lt;script src=&#34;http://consent.test/embed.js&#34;" in page
    assert "<iframe src=" not in page


def test_a_campaign_name_with_markup_stays_inert_on_the_page_and_in_the_snippets(app, owner):
    with app.app_context(), db.transaction() as session:
        campaigns.update_campaign(session, campaigns.by_slug(session, "demo"), name=XSS)
    page = owner.get(PAGE + "?lang=en").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    blocks = _code_blocks(page)
    # What is copied is HTML in which the name is itself escaped: pasted, it shows as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in blocks["snippet-script"]
    assert "<script>alert(1)" not in blocks["snippet-placeholder"]
    assert 'title="&lt;script&gt;' in blocks["snippet-iframe"]


def test_the_guides_of_every_site_builder_are_rendered(owner):
    page = owner.get(PAGE + "?lang=en").get_data(as_text=True)
    for key, title in (("plain-html", "Plain HTML"), ("wordpress", "WordPress"),
                       ("nationbuilder", "NationBuilder"), ("wix", "Wix"),
                       ("squarespace", "Squarespace")):
        assert f'<section id="guide-{key}" class="guide" lang="en"' in page
        assert f'<h3 id="guide-{key}-heading">{title}</h3>' in page
        assert f'<a href="#guide-{key}">{title}</a>' in page
    # Markdown became HTML: emphasis, code, and the guides' own code blocks, escaped.
    assert "<strong>Simplest: paste the URL.</strong>" in page
    assert ('<pre><code class="language-html">&lt;script src=&quot;https://consent.example.org'
            '/embed.js&quot;') in page
    assert "**" not in page and "```" not in page
    # The guides' "#" titles are the page's third level; their own sections come below.
    assert "<h1>" not in page.split('id="guides-heading"')[1]


def test_the_french_page_says_the_guides_are_in_english(owner):
    page = owner.get(PAGE + "?lang=fr").get_data(as_text=True)
    assert "Intégrer le widget" in page and "Les guides sont en anglais." in page
    assert 'data-copied="Copié"' in page


def test_a_guide_cannot_put_markup_or_template_code_on_the_page(app, owner, tmp_path,
                                                               monkeypatch):
    hostile = (f"# Title {XSS}\n\n{{{{ config.SECRET_KEY }}}} {{% raw %}}\n\n{XSS}\n\n"
               "[click](javascript:alert(1)) ![x](https://tracker.test/pixel.png)\n\n"
               "<iframe src=https://evil.test></iframe>\n")
    (tmp_path / "wordpress.md").write_text(hostile, encoding="utf-8")
    monkeypatch.setattr(guides, "EMBED_DIR", str(tmp_path))
    page = owner.get(PAGE + "?lang=en").get_data(as_text=True)
    section = page.split('<section id="guide-wordpress"')[1].split("</section>")[0]
    assert "<script>" not in section and "<img" not in section and "<iframe" not in section
    assert "javascript:" not in section.replace("[click](javascript:alert(1))", "")
    assert "{{ config.SECRET_KEY }}" in section and app.config["SECRET_KEY"] not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    # The other guides are missing from this folder: left out, not an error.
    assert 'id="guide-wix"' not in page


def test_guides_come_from_the_embed_folder_with_headings_moved_down():
    guide = guides.render("# WordPress\n\n## Caching\n\ntext", "wordpress")
    assert guide.title == "WordPress"
    assert str(guide.html) == "<h4>Caching</h4>\n<p>text</p>\n"
    assert [g.key for g in guides.guides()] == [key for key, _ in guides.GUIDES]


# --- the origin check --------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("https://marie2027.test/sign-up?ref=x#form", "Allowed: a page of https://marie2027.test "
                                                  "may show the widget"),
    ("https://MARIE2027.test:443/", "Allowed: a page of https://marie2027.test:443"),
    ("http://consent.test/somewhere", "Allowed: this is an address of the service itself."),
])
def test_a_page_on_an_allowed_origin_is_said_allowed(owner, url, expected):
    response = owner.get(PAGE, query_string={"page": url, "lang": "en"})
    assert response.status_code == 200
    assert _result(response.get_data(as_text=True)).startswith(expected)


@pytest.mark.parametrize("url, origin", [
    ("https://elsewhere.test/page", "https://elsewhere.test"),
    ("http://marie2027.test/", "http://marie2027.test"),  # https allowed, not http
    ("https://www.marie2027.test/", "https://www.marie2027.test"),
    ("https://marie2027.test:8443/", "https://marie2027.test:8443"),
])
def test_a_page_elsewhere_is_said_not_allowed_with_the_origin_to_add(owner, url, origin):
    response = owner.get(PAGE, query_string={"page": url, "lang": "en"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert _result(page) == (f"Not allowed: the origin {origin} is not in the campaign's list, "
                             "so browsers will refuse to show the widget there. "
                             "Add it in the settings.")
    assert 'href="/admin/c/demo/settings">Add it in the settings.</a>' in page


def test_a_viewer_is_told_to_ask_an_owner(app, campaign):
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get(PAGE, query_string={"page": "https://elsewhere.test/",
                                          "lang": "en"}).get_data(as_text=True)
    assert _result(page).endswith("Ask an owner to add it in the settings.")
    assert "/admin/c/demo/settings" not in page.split('id="check-result"')[1].split("</p>")[0]


@pytest.mark.parametrize("url, message", [
    ("javascript:alert(1)", "this is not the address of a web page"),
    ("data:text/html,<script>alert(1)</script>", "this is not the address of a web page"),
    ("garbage", "this is not the address of a web page"),
    ("ftp://marie2027.test/file", "this is not the address of a web page"),
    ("https://", "this is not the address of a web page"),
    ("http://[::1", "this is not the address of a web page"),
    ("https://marie2027.test:99999/", "this is not the address of a web page"),
    ("https://marie2027.test x/", "this is not the address of a web page"),
    ("https://marie2027.test/" + "a" * 3000, "this address is too long"),
    ("   ", "enter the address of a page"),
])
def test_what_is_not_a_page_url_gets_a_clear_answer_not_an_error(owner, url, message):
    response = owner.get(PAGE, query_string={"page": url, "lang": "en"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in _result(page)
    assert "<script>alert(1)" not in page


def test_the_page_typed_is_given_back_escaped(owner):
    url = f'https://elsewhere.test/?q={XSS}'
    page = owner.get(PAGE, query_string={"page": url}).get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    [value] = re.findall(r'<input type="url" name="page" id="page" value="([^"]*)"', page)
    assert html.unescape(value) == url


def test_the_check_follows_the_campaigns_list_as_it_changes(app, owner):
    query = {"page": "https://www.marie2027.test/join", "lang": "en"}
    assert _result(owner.get(PAGE, query_string=query).get_data(as_text=True)).startswith(
        "Not allowed")
    with app.app_context(), db.transaction() as session:
        campaigns.update_campaign(session, campaigns.by_slug(session, "demo"),
                                  origins=["https://marie2027.test", "http://www.marie2027.test"])
    # An http origin in the list also admits the same site over https, as browsers do.
    assert _result(owner.get(PAGE, query_string=query).get_data(as_text=True)) == (
        "Allowed: a page of https://www.marie2027.test may show the widget "
        "(the list has http://www.marie2027.test).")


def test_without_origins_the_page_says_no_site_may_show_the_widget(app, owner):
    with app.app_context(), db.transaction() as session:
        campaigns.update_campaign(session, campaigns.by_slug(session, "demo"), origins=[])
    page = owner.get(PAGE + "?lang=en").get_data(as_text=True)
    assert "None yet: no other site can show the widget." in page


@pytest.mark.parametrize("source, origin, allowed", [
    ("https://a.test", "https://a.test", True),
    ("https://a.test", "https://a.test:443", True),
    ("https://a.test:443", "https://a.test", True),
    ("http://a.test", "https://a.test", True),      # a secure upgrade
    ("https://a.test", "http://a.test", False),     # never a downgrade
    ("http://a.test:80", "https://a.test", False),  # CSP: an explicit port stays that port
    ("http://a.test:8080", "https://a.test:8080", True),
    ("https://a.test", "https://b.a.test", False),
    ("https://a.test", "https://a.test.evil.test", False),
    ("https://[::1]:8080", "https://[::1]:8080", True),
])
def test_origins_match_as_browsers_match_frame_ancestors(source, origin, allowed):
    assert framing.source_matches(source, origin) is allowed


def test_members_of_another_campaign_do_not_see_this_campaigns_embed_page(app, campaign):
    with app.app_context(), db.transaction() as session:
        campaigns.create_campaign(session, "other", name="Other", controller="Other",
                                  contact_email="dpo@other.test",
                                  policy_url="https://other.test/p")
    outsider = console(app, "outsider@other.test", slug="other")
    assert outsider.get(PAGE).status_code == 404
    assert outsider.get(PAGE, query_string={"page": "https://marie2027.test/"}
                        ).status_code == 404
    assert outsider.get("/admin/c/other/embed").status_code == 200
    assert app.test_client().get(PAGE).status_code == 302
