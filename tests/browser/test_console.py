"""The campaign console in a real browser: the first sign-in from the set-password link, the
main journeys of a campaign's team, every page by keyboard, axe-core's WCAG 2.2 AA rules on
every page in French and English, and the README's screenshots."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from consent_widget import db
from consent_widget.cli import main
from consent_widget.models import Campaign

from .conftest import SCREENSHOTS, SLUG
from .test_accessibility import axe_violations

OWNER = "owner@marie2027.test"
PASSWORD = "a long enough passphrase"


def first_sign_in(site, page, email: str = OWNER, *extra) -> None:
    """Create the account with the command, open its link and choose the password."""
    result = site.app.test_cli_runner().invoke(
        main, ["admin", "create", email, *(extra or ("--campaign", SLUG, "--role", "owner"))])
    assert result.exit_code == 0, result.output
    link = json.loads(result.stdout)["set_password_url"]
    page.goto(link + "?lang=en")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_role("button", name="Save the password").click()
    page.wait_for_load_state("load")


@pytest.fixture
def owner_page(page, site):
    """A page signed in as the campaign's owner, who is also the service's operator."""
    first_sign_in(site, page)
    with site.app.app_context():
        from consent_widget import accounts
        with db.transaction() as session:
            accounts.user_by_email(session, OWNER).is_operator = True
    return page


def console_pages(app) -> list[str]:
    """Every console page reachable by GET with no argument but the campaign."""
    paths = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or "GET" not in rule.methods:
            continue
        access = app.view_functions[rule.endpoint].admin_access["access"]
        if rule.arguments - {"slug"} or access == "public" and rule.arguments:
            continue
        if rule.endpoint == "admin.static" or "." in rule.rule.rsplit("/", 1)[-1]:
            continue  # assets and files (charts, archives, receipts), not pages
        paths.append(rule.build({"slug": SLUG}, append_unknown=False)[1])
    return sorted(paths)


def test_the_first_sign_in_from_the_link_opens_the_campaign(page, site):
    first_sign_in(site, page)
    assert page.url.endswith(f"/admin/c/{SLUG}/")
    assert page.locator("h1").inner_text()
    # The session cookie is the console's only, and not readable by scripts.
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["consent_console"]
    assert cookies[0]["httpOnly"] and cookies[0]["path"] == "/admin"
    assert cookies[0]["sameSite"] == "Lax"


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_finds_no_serious_violation_on_any_console_page(owner_page, site, axe_source,
                                                          lang):
    page = owner_page
    failures = {}
    for path in console_pages(site.app):
        page.goto(site.widget.origin + path + f"?lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang, path
        found = axe_violations(page.main_frame, axe_source)
        if found:
            failures[path] = found
    # The pages before signing in, too.
    page.context.clear_cookies()
    for path in ("/admin/login", "/admin/password/forgot"):
        page.goto(site.widget.origin + path + f"?lang={lang}")
        found = axe_violations(page.main_frame, axe_source)
        if found:
            failures[path] = found
    assert failures == {}


def assert_usable_by_keyboard(page, where: str, reload: bool = True) -> None:
    """Tab reaches every focusable element of the page shown, each with a visible focus, and
    (with ``reload``: a page reached by GET) the skip link comes first."""
    # Number every element a keyboard user must be able to reach.
    wanted = page.evaluate("""() => [...document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, iframe, summary')]
        .filter(e => !e.disabled && e.offsetParent !== null && e.tabIndex >= 0)
        .map((e, i) => e.setAttribute("data-tab-stop", i)).length""")
    reached = set()
    # Some fields take several stops (a date field: day, month, year, hour, minute).
    for _press in range(wanted * 2 + 10):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => { const e = document.activeElement;
            const style = getComputedStyle(e);
            return [e.getAttribute("data-tab-stop") || e.outerHTML.slice(0, 80),
                    e.tagName === "IFRAME" ? "inside" : style.outlineStyle,
                    e === document.body, e.outerHTML.slice(0, 120)]; }""")
        if info[2]:
            continue
        reached.add(info[0])
        # In the preview frame, the widget draws its own focus (tested with the widget).
        assert info[1] != "none", f"focus not visible on {info[0]} at {where}: {info[3]}"
    assert len(reached) >= wanted, f"{where}: {len(reached)} of {wanted} reached by Tab"
    if reload:
        # The skip link comes first and leads to the content.
        page.reload()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip", where


def test_every_console_page_is_usable_by_keyboard(owner_page, site):
    page = owner_page
    for path in console_pages(site.app):
        page.goto(site.widget.origin + path + "?lang=en")
        assert_usable_by_keyboard(page, path)


def test_the_look_is_previewed_in_the_real_widget_then_saved(owner_page, site):
    page = owner_page
    page.goto(site.widget.origin + f"/admin/c/{SLUG}/settings?lang=en")
    page.get_by_label("Accent colour (#rrggbb, empty for the default)").fill("#7a1f5c")
    page.get_by_role("button", name="Preview").click()
    frame = page.frame_locator("iframe.preview")
    colour = frame.locator("#send").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(122, 31, 92)"
    with site.app.app_context():
        saved = db.session().scalars(select(Campaign).where(Campaign.slug == SLUG)).one()
        assert saved.theme_accent == ""  # a preview saves nothing
    page.get_by_role("button", name="Save the look").click()
    page.wait_for_selector(".flash-success")
    with site.app.app_context():
        saved = db.session().scalars(select(Campaign).where(Campaign.slug == SLUG)).one()
        assert saved.theme_accent == "#7a1f5c"


def test_an_owner_invites_a_volunteer_who_joins_from_the_email(owner_page, site, browser):
    page = owner_page
    page.goto(site.widget.origin + f"/admin/c/{SLUG}/team?lang=en")
    page.get_by_label("Email address").fill("volunteer@marie2027.test")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send the invitation").click()
    page.wait_for_selector(".flash-success")
    body = site.deliver()[-1].get_body(("plain",)).get_content()
    link = re.search(r"(http://127\.0\.0\.1:\d+/admin/invitation/\S+)", body).group(1)
    context = browser.new_context()
    guest = context.new_page()
    guest.goto(link + "?lang=en")
    guest.get_by_label("New password").fill(PASSWORD)
    guest.get_by_label("The same password again").fill(PASSWORD)
    guest.get_by_role("button", name="Accept the invitation").click()
    guest.wait_for_load_state("load")
    assert guest.url.endswith(f"/admin/c/{SLUG}/")
    context.close()


@pytest.mark.parametrize("name, path, lang", [
    ("console-dashboard", "/", "en"),
    ("console-settings", "/settings", "fr"),
    ("console-team", "/team", "en"),
])
def test_console_screenshots_for_the_readme(owner_page, site, name, path, lang):
    page = owner_page
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(site.widget.origin + f"/admin/c/{SLUG}{path}?lang={lang}")
    page.wait_for_load_state("load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000
