"""The console's pages that the URL map cannot open with the campaign alone: those reached
through an id (a box's text and its versions, an endpoint's deliveries, a supporter, a receipt),
through a signed link (set a password, accept an invitation) or through a step of a form (the
second factor at sign-in, the recovery codes). Each is opened with real data, checked by
axe-core in French and English and walked by keyboard; a page added later with an argument
fails here until it is listed."""
from __future__ import annotations

import json

import pyotp
import pytest
from sqlalchemy import select

from consent_widget import accounts, db, webhooks
from consent_widget.cli import main
from consent_widget.models import Campaign, Receipt, Subject
from helpers import give
from webhook_receiver import Receiver

from .conftest import SLUG
from .test_accessibility import axe_violations
from .test_console import PASSWORD, assert_usable_by_keyboard, owner_page  # noqa: F401

ANA = "ana@marie2027.test"
TEXT = ("Recevez chaque mois la lettre d’information envoyée par Association Marie 2027. "
        "Désabonnez-vous à tout moment avec le lien de chaque e-mail.")
#: Console GET routes with arguments that are files, not pages.
FILES = {"admin.static", "admin.activity_chart", "admin.download_export",
         "admin.receipt_download"}


def _argument_pages(app) -> set[str]:
    """The endpoints of console pages whose URL needs more than the campaign."""
    return {rule.endpoint for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("admin.") and "GET" in rule.methods
            and rule.arguments - {"slug"} and rule.endpoint not in FILES
            and "." not in rule.rule.rsplit("/", 1)[-1]}


@pytest.fixture
def data(site, owner_page):
    """A supporter with a receipt, an endpoint with a delivery, a box published twice, and the
    signed links of a new account and of an invitation; the URLs of their pages by endpoint."""
    page = owner_page
    receiver = Receiver()
    receiver.start()
    with site.app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == SLUG)).one()
            endpoint = webhooks.add_endpoint(session, campaign, receiver.url).public_id
            owner = accounts.user_by_email(session, "owner@marie2027.test")
            invitation = accounts.invite(session, campaign, "guest@marie2027.test", "editor",
                                         owner)
            invitation_token = accounts.invitation_token(site.app.config["SECRET_KEY"],
                                                         invitation)
    give(site.app, SLUG, ANA, newsletter=True, networks=["facebook"])
    site.deliver()
    with site.app.app_context():
        session = db.session()
        subject = session.scalars(select(Subject).where(Subject.email == ANA)).one().public_id
        receipt = session.scalars(select(Receipt.id).join(
            Subject, Subject.id == Receipt.subject_id).where(Subject.email == ANA)).first()
    # A second version of the newsletter's French text, so the versions page shows a diff.
    page.goto(site.widget.origin + f"/admin/c/{SLUG}/texts/newsletter/fr?lang=en")
    page.get_by_label("Text of the box").fill(TEXT)
    page.get_by_role("button", name="Publish").click()
    page.wait_for_selector(".flash-success")
    created = site.app.test_cli_runner().invoke(main, ["admin", "create", "new@marie2027.test",
                                                       "--campaign", SLUG, "--role", "viewer"])
    assert created.exit_code == 0, created.output
    base = f"/admin/c/{SLUG}"
    yield {
        "admin.text_edit": base + "/texts/newsletter/fr",
        "admin.text_versions": base + "/texts/newsletter/fr/versions",
        "admin.webhook": base + f"/platforms/webhooks/{endpoint}",
        "admin.supporter": base + f"/supporters/{subject}",
        "admin.erase": base + f"/supporters/{subject}/erase",
        "admin.receipt": base + f"/supporters/{subject}/receipts/{receipt}",
        # Links that work for someone not signed in, opened in a context of their own.
        "admin.set_password": json.loads(created.stdout)["set_password_url"]
        .split(site.widget.origin, 1)[1],
        "admin.accept_invitation": f"/admin/invitation/{invitation_token}",
    }
    receiver.stop()


SIGNED_OUT = {"admin.set_password", "admin.accept_invitation"}


def test_every_page_with_an_argument_is_listed(site, data):
    assert _argument_pages(site.app) == set(data)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_and_the_keyboard_on_the_pages_reached_through_an_id_or_a_link(
        owner_page, site, browser, axe_source, data, lang):
    page = owner_page
    signed_out = browser.new_context().new_page()
    failures = {}
    for endpoint, path in sorted(data.items()):
        tab = signed_out if endpoint in SIGNED_OUT else page
        response = tab.goto(site.widget.origin + path + f"?lang={lang}")
        assert response.status == 200, (path, response.status)
        assert tab.locator("html").get_attribute("lang") == lang, path
        found = axe_violations(tab.main_frame, axe_source)
        if found:
            failures[path] = found
        if lang == "en":
            assert_usable_by_keyboard(tab, path)
    # The versions page shows the changes between the two versions.
    page.goto(site.widget.origin + data["admin.text_versions"] + f"?lang={lang}")
    assert page.locator("ins, del").count() > 0
    signed_out.context.close()
    assert failures == {}


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_and_the_keyboard_on_the_second_factors_pages(owner_page, site, browser,
                                                          axe_source, lang):
    page = owner_page
    failures = {}
    # Turning the second factor on shows the recovery codes, once (the answer to a post).
    page.goto(site.widget.origin + f"/admin/account?lang={lang}")
    secret = page.locator("code.secret").inner_text().strip()
    page.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    page.locator("form[action$='/account/second-factor'] button").click()
    page.wait_for_load_state("load")
    assert page.locator("li code").count() == accounts.RECOVERY_CODES
    found = axe_violations(page.main_frame, axe_source)
    if found:
        failures["recovery codes"] = found
    if lang == "en":
        assert_usable_by_keyboard(page, "recovery codes", reload=False)
    # Signing in again asks for a code after the password.
    context = browser.new_context()
    fresh = context.new_page()
    fresh.goto(site.widget.origin + f"/admin/login?lang={lang}")
    fresh.locator("input[name=email]").fill("owner@marie2027.test")
    fresh.locator("input[name=password]").fill(PASSWORD)
    fresh.locator("form button[type=submit]").click()
    fresh.wait_for_load_state("load")
    assert fresh.url.split("?")[0].endswith("/admin/login/second-factor")
    # The language chosen on the sign-in page is kept through the redirect.
    assert fresh.locator("html").get_attribute("lang") == lang
    found = axe_violations(fresh.main_frame, axe_source)
    if found:
        failures["second factor"] = found
    if lang == "en":
        assert_usable_by_keyboard(fresh, "second factor")
    # A wrong code: the page with its error, as the person then reads it.
    fresh.locator("input[name=code]").fill("000000")
    fresh.locator("form button[type=submit]").click()
    fresh.wait_for_load_state("load")
    found = axe_violations(fresh.main_frame, axe_source)
    if found:
        failures["second factor, wrong code"] = found
    context.close()
    assert failures == {}
