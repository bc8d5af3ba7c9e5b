"""The loader script and oEmbed."""
from __future__ import annotations

import pytest


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
