"""The widget as people with a keyboard, a screen reader, a small screen or a dark theme meet it:
keyboard-only completion, axe-core's WCAG 2.2 AA rules in French and English, reflow at 320 px,
and the screenshots that the README shows."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from .conftest import SCREENSHOTS, SLUG
from consent_widget import db, theme
from consent_widget.models import Campaign
from .test_embedding import (assert_confirmation_email_arrives, assert_only_our_hosts,
                             wait_for_widgets)

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_violations(frame, axe_source: str) -> list[str]:
    """Serious and critical violations axe-core finds on the frame's document."""
    # Evaluated through the DevTools protocol, which the page's strict CSP does not restrict.
    frame.evaluate(axe_source)
    results = frame.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                             AXE_TAGS)
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[node['target'] for node in v['nodes']]}"
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def focused(frame) -> str:
    """The id (or tag) of the element that has the keyboard focus in the frame."""
    return frame.evaluate("document.activeElement.id || document.activeElement.tagName")


def tab_to(page, frame, element_id: str, limit: int = 12) -> None:
    """Press Tab until the element has the focus, checking each stop's focus is visible."""
    for _press in range(limit):
        page.keyboard.press("Tab")
        if focused(frame) == element_id:
            outline = frame.evaluate("""() => {
                const style = getComputedStyle(document.activeElement);
                return [style.outlineStyle, parseFloat(style.outlineWidth)];
            }""")
            assert outline[0] != "none" and outline[1] >= 2, f"focus not visible on {element_id}"
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def test_a_keyboard_alone_completes_a_signup_in_the_embedded_widget(page, site):
    page.goto(site.host.origin + "/script")
    (frame,) = wait_for_widgets(page, site)
    tab_to(page, frame, "email")
    page.keyboard.type("ana@example.test")
    tab_to(page, frame, "newsletter")
    page.keyboard.press("Space")
    tab_to(page, frame, "social_matching-1")
    page.keyboard.press("Space")
    tab_to(page, frame, "send")
    page.keyboard.press("Enter")
    frame.wait_for_selector("#widget-status h2")
    # The answer takes the focus, so a screen reader reads it at once.
    assert focused(frame) == "widget-status"
    assert frame.locator("#widget-status").get_attribute("role") == "status"
    assert_confirmation_email_arrives(site)
    assert_only_our_hosts(page, site)


def test_errors_are_announced_and_lead_back_to_the_field_by_keyboard(page, site):
    page.goto(site.widget.origin + f"/w/{SLUG}?lang=en")
    page.locator("#email").fill("not an address")
    page.locator("#email").press("Enter")
    page.wait_for_selector("#error-summary li a")
    assert page.locator("#error-summary").get_attribute("role") == "alert"
    assert focused(page.main_frame) == "error-summary"
    assert page.locator("#email").get_attribute("aria-invalid") == "true"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert focused(page.main_frame) == "email"


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_axe_finds_no_serious_violation(page, site, axe_source, lang):
    page.goto(site.widget.origin + f"/w/{SLUG}?lang={lang}")
    assert page.locator("html").get_attribute("lang") == lang
    assert axe_violations(page.main_frame, axe_source) == []
    # The same page showing errors, as a person who made a mistake sees it.
    page.locator("#email").fill("nope")
    page.locator("#send").click()
    page.wait_for_selector("#error-summary li")
    assert axe_violations(page.main_frame, axe_source) == []


def test_axe_finds_no_serious_violation_in_the_dark_scheme(browser, site, axe_source):
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    page.goto(site.widget.origin + f"/w/{SLUG}?lang=en")
    assert axe_violations(page.main_frame, axe_source) == []
    context.close()


def test_the_form_reflows_at_320_px_with_equal_targets_of_24_px(browser, site):
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    page.goto(site.widget.origin + f"/w/{SLUG}?lang=fr")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    for selector in ("input[type=checkbox]", "#email", "#send"):
        for box in page.locator(selector).all():
            size = box.bounding_box()
            assert size["width"] >= 24 and size["height"] >= 24, selector
    # The newsletter and each network look alike: same box, same label type.
    looks = page.locator(".choice").evaluate_all("""choices => choices.map(choice => {
        const box = choice.querySelector("input").getBoundingClientRect();
        const label = getComputedStyle(choice.querySelector("label"));
        return [box.width, box.height, label.fontSize, label.fontWeight, label.color];
    })""")
    assert len(looks) == 3 and all(look == looks[0] for look in looks)
    context.close()


def test_a_campaign_theme_applies_under_the_strict_csp(browser, site):
    with site.app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == SLUG)).one()
            for column, value in theme.validate("#7a1f5c", "serif", 12, "light").items():
                setattr(campaign, column, value)
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    refusals = []
    page.on("console", lambda message: refusals.append(message.text))
    page.goto(site.widget.origin + f"/w/{SLUG}?lang=en")
    button = page.locator("#send")
    assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(122, 31, 92)"
    assert button.evaluate("e => getComputedStyle(e).borderTopLeftRadius") == "12px"
    assert "Charter" in button.evaluate("e => getComputedStyle(e).fontFamily")
    # "light" holds even for a reader who prefers dark.
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert background == "rgb(255, 255, 255)"
    assert not [text for text in refusals if "Content Security Policy" in text]
    context.close()


@pytest.mark.parametrize("name, lang, width, scheme", [
    ("widget-fr", "fr", 640, "light"),
    ("widget-en", "en", 640, "light"),
    ("widget-narrow", "fr", 320, "light"),
    ("widget-dark", "en", 640, "dark"),
])
def test_screenshots_for_the_readme(browser, site, name, lang, width, scheme):
    context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page = context.new_page()
    page.goto(site.widget.origin + f"/w/{SLUG}?lang={lang}")
    page.wait_for_load_state("load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000
    context.close()
