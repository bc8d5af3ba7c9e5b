"""The loader script, oEmbed, and the snippets and theme options of the CLI."""
from __future__ import annotations

import gzip
import html
import re
from pathlib import Path

import pytest

from conftest import run_json
from consent_widget.cli import main


def test_embed_js_is_served_as_cacheable_javascript(client, campaign):
    response = client.get("/embed.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert "max-age" in response.headers["Cache-Control"]
    assert b"postMessage" in response.data or b"message" in response.data
    assert "Set-Cookie" not in response.headers


def test_oembed_answers_rich_json_for_a_widget_url(client, campaign):
    response = client.get("/oembed", query_string={"url": "http://consent.test/w/demo",
                                                    "format": "json", "maxwidth": "400"})
    assert response.status_code == 200
    body = response.json
    assert body["version"] == "1.0" and body["type"] == "rich"
    assert body["width"] == 400 and body["height"] > 0
    assert 'src="http://consent.test/w/demo"' in body["html"]


@pytest.mark.parametrize("query, status", [
    ({"url": "http://consent.test/w/nope"}, 404),
    ({"url": "https://evil.test/w/demo"}, 404),
    ({"url": "http://consent.test/api/v1/consents/check"}, 404),
    ({}, 404),
    ({"url": "http://consent.test/w/demo", "format": "xml"}, 501),
    ({"url": "http://consent.test/w/demo", "maxwidth": "-3"}, 400),
    ({"url": "http://consent.test/w/demo", "maxheight": "abc"}, 400),
])
def test_oembed_rejects_what_it_cannot_embed(client, campaign, query, status):
    response = client.get("/oembed", query_string=query)
    assert response.status_code == status
    assert response.json["error"]


# --- the loader's caching and size -------------------------------------------------------------

def test_embed_js_is_revalidated_by_etag_and_the_versioned_url_is_immutable(client, campaign):
    first = client.get("/embed.js")
    assert "max-age=3600" in first.headers["Cache-Control"]
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    etag = first.headers["ETag"]
    again = client.get("/embed.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    version = etag.strip('"')
    pinned = client.get(f"/embed.{version}.js")
    assert pinned.status_code == 200 and pinned.data == first.data
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = client.get("/embed.0123456789ab.js")
    assert stale.status_code == 302 and stale.headers["Location"].endswith(f"/embed.{version}.js")


def test_the_loader_and_a_first_load_of_the_widget_stay_within_their_byte_budgets(client, campaign):
    loader = client.get("/embed.js").data
    assert len(gzip.compress(loader, 9)) <= 1536
    page = client.get("/w/demo")
    text = page.get_data(as_text=True)
    assets = [html.unescape(url) for url in re.findall(r'(?:href|src)="(/w/_static/[^"]+)"', text)]
    assert len(assets) == 2
    total = sum(len(gzip.compress(body, 9)) for body in
                [page.data, *(client.get(url).data for url in assets)])
    assert total <= 10 * 1024


def test_the_loader_sets_no_cookie_uses_no_storage_and_names_no_other_host():
    source = (Path(__file__).resolve().parent.parent / "consent_widget" / "embed" / "embed.js").read_text()
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.S)
    for word in ("cookie", "localStorage", "sessionStorage", "indexedDB", "http:", "https:",
                 "fetch(", "XMLHttpRequest", "innerHTML"):
        assert word not in code, word


# --- oEmbed --------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, size", [
    ({}, (600, 640)),
    ({"maxwidth": "320"}, (320, 640)),
    ({"maxheight": "400"}, (600, 400)),
    ({"maxwidth": "9000", "maxheight": "9000"}, (600, 640)),
])
def test_oembed_honours_maxwidth_and_maxheight(client, campaign, query, size):
    body = client.get("/oembed", query_string={"url": "http://consent.test/w/demo",
                                                **query}).json
    assert (body["width"], body["height"]) == size
    assert f'width="{size[0]}" height="{size[1]}"' in body["html"]
    assert body["title"] == "Marie 2027" and 'title="Marie 2027"' in body["html"]


def test_oembed_keeps_the_language_of_the_pasted_url(client, campaign):
    body = client.get("/oembed", query_string={"url": "http://consent.test/w/demo?lang=en"}).json
    assert 'src="http://consent.test/w/demo?lang=en"' in body["html"]
    odd = client.get("/oembed", query_string={"url": "http://consent.test/w/demo?lang=<x>"}).json
    assert 'src="http://consent.test/w/demo"' in odd["html"]


@pytest.mark.parametrize("url", ["http://[::1", "http://consent.test:99999/w/demo", "\x00"])
def test_oembed_answers_404_to_malformed_urls(client, campaign, url):
    response = client.get("/oembed", query_string={"url": url})
    assert response.status_code == 404


def test_the_widget_page_carries_the_oembed_discovery_link_that_oembed_answers(client, campaign):
    page = client.get("/w/demo").get_data(as_text=True)
    href = html.unescape(re.search(
        r'<link rel="alternate" type="application/json\+oembed" href="([^"]+)"', page).group(1))
    assert client.get(href.removeprefix("http://consent.test")).json["type"] == "rich"


# --- what the CLI prints -------------------------------------------------------------------------

def test_campaign_snippet_prints_every_way_to_embed(runner, campaign):
    out = run_json(runner, "campaign", "snippet", "demo")
    assert out["embed_snippet"] == ('<script src="http://consent.test/embed.js" '
                                    'data-campaign="demo" async></script>')
    assert out["fallback_snippet"] == ('<noscript><a href="http://consent.test/w/demo">'
                                       'Marie 2027</a></noscript>')
    assert ('<div data-consent-campaign="demo"><a href="http://consent.test/w/demo">Marie 2027'
            '</a></div>') in out["placeholder_snippet"]
    assert out["iframe_snippet"].startswith('<iframe src="http://consent.test/w/demo" '
                                            'title="Marie 2027"')
    assert out["oembed_url"] == ("http://consent.test/oembed?url=http%3A%2F%2Fconsent.test"
                                 "%2Fw%2Fdemo&format=json")
    assert re.fullmatch(r"http://consent\.test/embed\.[0-9a-f]{12}\.js",
                        out["versioned_loader_url"])


def test_campaign_snippet_of_an_unknown_campaign_fails_clearly(runner, campaign):
    result = runner.invoke(main, ["campaign", "snippet", "nobody"])
    assert result.exit_code != 0 and "nobody" in result.output


CREATE = ["campaign", "create", "theme", "--name", "N", "--controller", "C",
          "--contact-email", "dpo@x.test", "--policy-url", "https://x.test/p"]


def test_campaign_create_takes_a_theme_that_the_widget_then_shows(runner, client):
    out = run_json(runner, *CREATE, "--accent", "#7A1F5C", "--font", "serif", "--radius", "0",
                   "--scheme", "light")
    assert out["theme"] == {"accent": "#7a1f5c", "font": "serif", "radius": 0, "scheme": "light"}
    page = client.get("/w/theme").get_data(as_text=True)
    assert 'data-scheme="light"' in page and "--accent:#7a1f5c" in page


@pytest.mark.parametrize("args, message", [
    (["--accent", "red"], "#rrggbb"),
    (["--accent", "#fff;}input{display:none"], "#rrggbb"),
    (["--accent", "#ffff00"], "contrast"),
    (["--accent", "#1f4fbf", "--scheme", "dark"], "contrast"),
    (["--radius", "40"], "radius"),
    (["--font", "Comic Sans"], "font"),
    (["--scheme", "sepia"], "scheme"),
])
def test_campaign_create_refuses_a_theme_that_would_hurt_readability(runner, args, message):
    result = runner.invoke(main, CREATE + args)
    assert result.exit_code != 0
    assert message in result.output.lower()
    assert runner.invoke(main, ["campaign", "snippet", "theme"]).exit_code != 0
