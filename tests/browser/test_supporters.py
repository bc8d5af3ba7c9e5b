"""Answering a supporter in a real browser: look them up, read their record and a receipt,
download their data, erase them after ticking the box; the supporter's own *Erase my data*,
which asks before it erases; and axe-core on each of these pages in French and English."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from consent_widget import db, urls
from consent_widget.models import Campaign, Subject
from helpers import give, status

from .conftest import SLUG
from .test_accessibility import axe_violations
from .test_console import owner_page  # noqa: F401  (a fixture)

ANA = "ana@marie2027.test"


def _subject(site) -> Subject:
    with site.app.app_context():
        return db.session().scalars(select(Subject).where(Subject.email == ANA)).one()


def _manage_url(site) -> str:
    with site.app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign).where(Campaign.slug == SLUG)).one()
        person = session.scalars(select(Subject).where(Subject.email == ANA)).one()
        return urls.manage_url(campaign, person)


def _look_up(page, site, query: str) -> None:
    page.goto(site.widget.origin + f"/admin/c/{SLUG}/supporters?lang=en")
    page.get_by_label("Email address or supporter id (sub_…)").fill(query)
    page.get_by_role("button", name="Look up").click()
    page.wait_for_load_state("load")


def test_an_owner_looks_up_exports_and_erases_a_supporter(owner_page, site):  # noqa: F811
    page = owner_page
    give(site.app, SLUG, ANA, newsletter=True, networks=["facebook"])
    subject_id = _subject(site).public_id
    _look_up(page, site, "  ANA@marie2027.TEST ")
    assert page.url.endswith(f"/admin/c/{SLUG}/supporters/{subject_id}")
    assert page.get_by_role("heading", level=1).inner_text() == f"Supporter {subject_id}"
    assert page.get_by_text(ANA).count() >= 1
    page.get_by_role("link", name="Read").first.click()
    assert page.get_by_role("heading", name="Consent receipt").count() == 1
    page.go_back()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download everything held (Art. 15)").click()
    document = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert document["email"] == ANA and document["subject"]["id"] == subject_id
    page.get_by_role("link", name="Erase (Art. 17)…").click()
    page.wait_for_load_state("load")
    # Without the box ticked, nothing is erased and the page says why.
    page.get_by_role("button", name="Erase this supporter's data").click()
    page.wait_for_selector(".error-summary")
    assert status(site.app, SLUG, ANA, "newsletter") == "given"
    page.get_by_label("I confirm: erase this supporter's data. This cannot be undone.").check()
    page.get_by_role("button", name="Erase this supporter's data").click()
    page.wait_for_selector(".flash-success")
    assert page.url.endswith(f"/admin/c/{SLUG}/supporters/{subject_id}")
    assert status(site.app, SLUG, ANA, "newsletter") == "withdrawn"
    with site.app.app_context():
        erased = db.session().scalars(select(Subject).where(
            Subject.public_id == subject_id)).one()
        assert erased.email is None and erased.erased_at is not None
    assert page.get_by_text(ANA).count() == 0


def test_the_supporter_is_asked_before_their_data_is_erased(page, site):
    give(site.app, SLUG, ANA, newsletter=True)
    manage = _manage_url(site)
    page.goto(manage + "?lang=en")
    page.get_by_role("button", name="Erase my data").click()
    page.wait_for_load_state("load")
    assert page.get_by_role("heading", name="Erase your data?").count() == 1
    assert status(site.app, SLUG, ANA, "newsletter") == "given"
    # Changing one's mind leads back to the manage page, which still works.
    page.get_by_role("link", name="No, keep my data and go back").click()
    page.wait_for_load_state("load")
    assert page.get_by_role("button", name="Erase my data").count() == 1
    page.get_by_role("button", name="Erase my data").click()
    page.get_by_role("button", name="Yes, erase my data").click()
    page.wait_for_load_state("load")
    assert page.get_by_role("heading", name="Your data is erased").count() == 1
    assert status(site.app, SLUG, ANA, "newsletter") == "withdrawn"
    assert page.context.cookies() == []


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_finds_no_serious_violation_on_the_supporters_pages(owner_page, site,  # noqa: F811
                                                                axe_source, lang):
    page = owner_page
    receipt_id = give(site.app, SLUG, ANA, newsletter=True, networks=["linkedin"])
    person = _subject(site)
    base = site.widget.origin + f"/admin/c/{SLUG}/supporters/{person.public_id}"
    manage = _manage_url(site)
    failures = {}
    for path in (base, base + "/erase", base + f"/receipts/{receipt_id}"):
        page.goto(path + f"?lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang, path
        found = axe_violations(page.main_frame, axe_source)
        if found:
            failures[path] = found
    page.goto(manage + f"?lang={lang}")
    page.get_by_role("button", name="Effacer mes données" if lang == "fr"
                     else "Erase my data").click()
    page.wait_for_load_state("load")
    found = axe_violations(page.main_frame, axe_source)
    if found:
        failures["the manage page's confirmation"] = found
    assert failures == {}
