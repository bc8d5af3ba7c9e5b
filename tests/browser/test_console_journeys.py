"""The console's journeys that reach past the console, in a real browser: an API client made
on the platforms page works against the real OAuth token endpoint and consent API until it is
revoked there; a text published on the texts page is the one the embedded widget shows; a
snippet's copy button puts the snippet on the clipboard; a webhook endpoint added on the page
receives signed deliveries that its page then lists; a proof export started on the proof page
downloads as a file that the auditor's command verifies; a campaign the operator opens and its
owner sets up is the one the widget shows."""
from __future__ import annotations

import base64
import json
import re

from consent_widget.cli import main
from helpers import give
from webhook_receiver import Receiver

from .conftest import SLUG
from .test_console import owner_page  # noqa: F401 (a fixture)
from .test_embedding import wait_for_widgets

NEWSLETTER_TEXT = ("Recevez chaque mois la lettre d’information envoyée par Association Marie "
                   "2027. Désabonnez-vous à tout moment avec le lien de chaque e-mail.")


def console_url(site, path: str = "") -> str:
    """A page of the campaign's console, in English."""
    return site.widget.origin + f"/admin/c/{SLUG}{path}?lang=en"


def _token(page, site, client_id: str, secret: str):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return page.request.post(site.widget.origin + "/oauth/token",
                             form={"grant_type": "client_credentials"},
                             headers={"Authorization": "Basic " + basic})


def _check(page, site, token: str):
    return page.request.post(site.widget.origin + "/api/v1/consents/check",
                             data=json.dumps({"email": "ana@marie2027.test",
                                              "purpose": "newsletter"}),
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json"})


def test_a_client_made_on_the_platforms_page_works_until_revoked_there(owner_page, site):
    page = owner_page
    page.goto(console_url(site, "/platforms"))
    page.get_by_label("Who the client is (for your records)").fill("Campaign CRM")
    page.get_by_role("button", name="Create an API client").click()
    secret = page.locator("#client-secret").inner_text().strip()
    row = page.locator("tr", has_text="Campaign CRM")
    client_id = row.locator("code").first.inner_text().strip()
    assert client_id.startswith("cw_") and secret
    # The secret is shown once: the platforms page shown again no longer has it.
    page.goto(console_url(site, "/platforms"))
    assert secret not in page.content()

    answer = _token(page, site, client_id, secret)
    assert answer.status == 200, answer.text()
    token = answer.json()["access_token"]
    assert _check(page, site, token).status == 200

    page.locator("tr", has_text="Campaign CRM").get_by_role("button", name="Revoke").click()
    page.wait_for_selector(".flash-success")
    assert "revoked" in page.locator("tr", has_text="Campaign CRM").inner_text()
    assert _check(page, site, token).status == 401
    assert _token(page, site, client_id, secret).status == 401


def test_a_text_published_on_the_texts_page_is_the_one_the_widget_shows(owner_page, site,
                                                                         browser):
    page = owner_page
    page.goto(console_url(site, "/texts"))
    page.locator(f'a[href="/admin/c/{SLUG}/texts/newsletter/fr"]').click()
    page.get_by_label("Text of the box").fill(NEWSLETTER_TEXT)
    page.get_by_role("button", name="Publish").click()
    assert "Version 2 is published" in page.locator(".flash-success").inner_text()

    # A visitor whose browser asks for French, on the campaign's own site.
    visitor = browser.new_context(locale="fr-FR")
    widget = visitor.new_page()
    widget.goto(site.host.origin + "/script")
    (frame,) = wait_for_widgets(widget, site)
    assert frame.locator("#newsletter-text").inner_text().strip() == NEWSLETTER_TEXT
    visitor.close()


def test_the_copy_button_puts_the_snippet_on_the_clipboard(owner_page, site):
    page = owner_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=site.widget.origin)
    page.goto(console_url(site, "/embed"))
    snippet = page.locator("#snippet-script").inner_text()
    assert f'data-campaign="{SLUG}"' in snippet
    page.get_by_role("button", name="Copy · Script").click()
    # The result is announced to screen readers, and the clipboard holds the snippet.
    page.wait_for_function(
        "document.getElementById('snippet-script-status').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == page.evaluate(
        "document.getElementById('snippet-script').textContent")


def test_a_webhook_added_on_the_page_gets_signed_deliveries_that_its_page_lists(owner_page,
                                                                               site):
    page = owner_page
    receiver = Receiver()
    receiver.start()
    try:
        page.goto(console_url(site, "/platforms"))
        page.get_by_label("Endpoint URL").fill(receiver.url)
        page.get_by_role("checkbox", name="consent.given").check()
        page.get_by_role("button", name="Add the endpoint").click()
        # The receiver verifies every request with the signing secret the page shows once.
        receiver.secret = page.locator("#webhook-secret").inner_text().strip()
        page.goto(console_url(site, "/platforms"))
        page.get_by_role("button", name="Send a test").click()
        assert "answered 200" in page.locator(".flash-success").inner_text()
        assert receiver.rejected == 0 and receiver.requests

        give(site.app, SLUG, "ana@marie2027.test", newsletter=True)
        site.deliver()
        given = [webhook_id for webhook_id, body in receiver.processed.items()
                 if body.get("type") == "consent.given"]
        assert len(given) == 1 and receiver.rejected == 0

        page.get_by_role("link", name=receiver.url).click()
        row = page.locator("tbody tr", has_text=given[0])
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == "sent" and cells[4] == "200", cells
    finally:
        receiver.stop()


def test_a_proof_export_downloads_a_file_the_auditors_command_verifies(owner_page, site,
                                                                      tmp_path):
    page = owner_page
    give(site.app, SLUG, "ana@marie2027.test", newsletter=True, networks=["facebook"])
    page.goto(console_url(site, "/proof"))
    page.get_by_role("button", name="Export the proof now").click()
    page.wait_for_selector(".flash-success")
    # The page reloads itself while the job runs; the link appears when it is done.
    download_link = page.get_by_role("link", name="Download")
    download_link.wait_for(timeout=30000)
    with page.expect_download() as started:
        download_link.click()
    archive = tmp_path / started.value.suggested_filename
    started.value.save_as(archive)
    assert archive.suffix == ".zip"

    result = site.app.test_cli_runner().invoke(main, ["ledger", "verify-export", str(archive)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["events"] >= 2
    head = page.locator("tbody tr").first.locator("code").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", report["head"]) and report["head"] == head


def test_the_operator_opens_a_campaign_that_its_owner_sets_up_and_the_widget_follows(
        owner_page, site):  # noqa: F811
    page = owner_page
    page.goto(site.widget.origin + "/admin/operator?lang=en")
    page.get_by_label("Identifier").fill("laura")
    page.get_by_label("Public name").fill("Laura 2027")
    page.get_by_label("Data controller (the candidate or party)").fill("Association Laura 2027")
    page.get_by_label("Contact address for supporters' data questions").fill(
        "dpo@laura2027.test")
    page.get_by_label("Privacy policy URL").fill("https://laura2027.test/privacy")
    page.get_by_label("Sites allowed to embed the widget, one origin per line").fill(
        "https://laura2027.test")
    # The form offers every network; this campaign asks about Facebook only.
    page.get_by_label("Facebook").check()
    for other in ("LinkedIn", "X (Twitter)", "Meetup"):
        page.get_by_label(other, exact=True).uncheck()
    page.get_by_label("Email address of the campaign's first owner").fill(
        "owner@marie2027.test")
    page.get_by_role("button", name="Open the campaign").click()
    page.wait_for_load_state("load")
    assert "The campaign Laura 2027 is open" in page.locator("body").inner_text()

    # The first owner (here an existing account) sets the campaign up on its settings page.
    page.goto(site.widget.origin + "/admin/c/laura/settings?lang=en")
    page.get_by_label("Public name").fill("Laura Martin 2027")
    page.get_by_role("button", name="Save the settings").click()
    page.wait_for_load_state("load")
    assert page.get_by_label("Public name").input_value() == "Laura Martin 2027"

    # The widget asks in the new campaign's name, for the one network it offers, unticked.
    page.goto(site.widget.origin + "/w/laura?lang=en")
    body = page.locator("body").inner_text()
    assert "Laura Martin 2027" in body
    boxes = page.locator("input[type=checkbox]")
    assert boxes.count() >= 2
    assert not any(boxes.nth(i).is_checked() for i in range(boxes.count()))
    assert "Facebook" in body
    assert not any(other in body for other in ("LinkedIn", "Twitter", "Meetup"))
