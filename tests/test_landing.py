"""The service's front page at ``/``: what it is and where to go, in French and English, with
no script and no cookie."""
from __future__ import annotations

import re

import pytest

from consent_widget import campaigns, db

from console import console

XSS = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>"


@pytest.mark.parametrize("headers, query, lang, heading", [
    ({}, {}, "fr", "Le consentement pour les campagnes, enregistré et prouvable"),
    ({"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"}, {}, "en",
     "Consent for campaigns, recorded and provable"),
    ({"Accept-Language": "en"}, {"lang": "fr"}, "fr",
     "Le consentement pour les campagnes, enregistré et prouvable"),
    ({"Accept-Language": "fr"}, {"lang": "en"}, "en",
     "Consent for campaigns, recorded and provable"),
])
def test_the_front_page_speaks_the_readers_language(client, headers, query, lang, heading):
    response = client.get("/", headers=headers, query_string=query)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'<html lang="{lang}"' in page
    assert f"<h1>{heading}</h1>" in page
    assert re.search(rf'<a href="\?lang={lang}"[^>]* aria-current="true">', page)
    assert response.headers["Vary"] == "Accept-Language"


def test_the_front_page_links_to_the_console_and_the_public_documents_that_exist(client):
    page = client.get("/?lang=en").get_data(as_text=True)
    links = re.findall(r'<a href="(/[^"?]*)"', page)
    assert links[0] == "/admin/login"
    assert set(links) >= {"/admin/login", "/api/v1/openapi.json", "/.well-known/jwks.json"}
    for link in links:
        assert client.get(link).status_code == 200, link


def test_the_front_page_sets_no_cookie_and_runs_no_script(app, campaign):
    signed_in = console(app, "owner@marie2027.test", slug="demo")
    for client in (app.test_client(), signed_in):
        response = client.get("/")
        assert "Set-Cookie" not in response.headers
        page = response.get_data(as_text=True)
        assert "<script" not in page and " style=" not in page
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy and "unsafe-inline" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_front_page_names_no_campaign(app, client, campaign):
    with app.app_context(), db.transaction() as session:
        campaigns.update_campaign(session, campaigns.by_slug(session, "demo"), name=XSS)
    page = client.get("/").get_data(as_text=True)
    assert "alert(1)" not in page and "Marie 2027" not in page


def test_only_get_is_answered(client):
    assert client.post("/").status_code == 405
