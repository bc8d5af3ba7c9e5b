"""The widget embedded in a real browser by a site on another origin: with the loader script,
placeholders, a plain iframe and WordPress's sandboxed iframe, a person completes a signup and
the confirmation email arrives; frames fit their content; unlisted sites cannot frame it."""
from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from sqlalchemy import select

from consent_widget import db
from consent_widget.models import Signup

EMAIL = "ana@example.test"


def widget_frames(page, site):
    """The frames of the page that show the widget."""
    return [frame for frame in page.frames if frame.url.startswith(site.widget.origin + "/w/")]


def wait_for_widgets(page, site, count: int = 1):
    """Wait until ``count`` widget frames show their form; return them."""
    page.wait_for_function(
        "n => document.querySelectorAll('iframe').length >= n", arg=count)
    page.wait_for_load_state("load")
    frames = widget_frames(page, site)
    assert len(frames) == count, [frame.url for frame in page.frames]
    for frame in frames:
        frame.wait_for_selector("#signup")
    return frames


def sign_up_in(frame, email: str = EMAIL) -> None:
    """Fill in the form as a person does (newsletter and Facebook) and send it."""
    frame.locator("#email").fill(email)
    frame.locator("#newsletter").check()
    frame.locator("#social_matching-0").check()
    frame.locator("button[type=submit]").click()
    frame.wait_for_selector("#widget-status h2")
    assert frame.locator("#signup").is_hidden()


def assert_confirmation_email_arrives(site, email: str = EMAIL) -> None:
    messages = site.deliver()
    assert [message["To"] for message in messages] == [email]
    body = messages[0].get_body(preferencelist=("plain",)).get_content()
    assert re.search(re.escape(site.widget.origin) + r"/w/marie/confirm/\S+", body)


def recorded_origin(site) -> str:
    with site.app.app_context():
        return db.session().scalars(select(Signup)).one().origin


def assert_only_our_hosts(page, site) -> None:
    """Every request went to the widget's server or the campaign's site: nothing else."""
    # The record covers the widget's frames too, not only the host page.
    assert any("/w/_static/widget.js" in url for url in page.requested), page.requested
    contacted = {urlsplit(url).netloc for url in page.requested if url.startswith("http")}
    assert contacted <= site.hosts, contacted - site.hosts
    assert page.context.cookies() == []


def frame_fits_its_content(page, frame) -> None:
    """Wait until the iframe element is as tall as the widget's document."""
    for _attempt in range(50):
        inner = frame.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
        outer = frame.frame_element().evaluate("e => e.getBoundingClientRect().height")
        if abs(inner - outer) <= 1:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the frame is {outer}px tall, its content {inner}px")


def test_the_script_snippet_inserts_a_titled_frame_and_completes_a_signup(page, site):
    page.goto(site.host.origin + "/script")
    (frame,) = wait_for_widgets(page, site)
    element = frame.frame_element()
    assert element.get_attribute("title")
    assert "origin=" + quote(site.host.origin, safe="") in frame.url
    frame_fits_its_content(page, frame)
    before = element.evaluate("e => e.getBoundingClientRect().height")
    assert before != 576, "the frame kept the loader's initial height"
    sign_up_in(frame)
    # The thanks message is shorter than the form: the frame follows.
    frame_fits_its_content(page, frame)
    assert element.evaluate("e => e.getBoundingClientRect().height") < before
    assert_confirmation_email_arrives(site)
    assert recorded_origin(site) == site.host.origin
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert_only_our_hosts(page, site)


def test_several_placeholders_on_one_page_each_get_their_own_widget(page, site):
    page.goto(site.host.origin + "/placeholders")
    first, second = wait_for_widgets(page, site, 2)
    assert first.evaluate("document.documentElement.lang") == "fr"
    assert second.evaluate("document.documentElement.lang") == "en"
    # Each frame sits inside its own placeholder and is sized by its own messages.
    assert page.locator("div[data-consent-campaign] > iframe").count() == 2
    # The fallback link inside a placeholder gave way to the widget.
    assert page.locator("div[data-consent-campaign] a").count() == 0
    frame_fits_its_content(page, first)
    frame_fits_its_content(page, second)
    sign_up_in(second)
    frame_fits_its_content(page, second)
    assert first.locator("#signup").is_visible()
    assert_confirmation_email_arrives(site)
    assert_only_our_hosts(page, site)


def test_the_iframe_snippet_completes_a_signup(page, site):
    page.goto(site.host.origin + "/iframe")
    (frame,) = wait_for_widgets(page, site)
    sign_up_in(frame)
    assert_confirmation_email_arrives(site)
    # A plain iframe names no origin: the server took it from the frame's Referer.
    assert recorded_origin(site) == site.host.origin
    assert_only_our_hosts(page, site)


def test_wordpress_sandboxed_frame_completes_a_signup_and_is_resized(page, site):
    page.goto(site.host.origin + "/wordpress")
    (frame,) = wait_for_widgets(page, site)
    # The sandbox makes the widget's origin opaque: it submits with fetch and CORS for null.
    assert frame.evaluate("self.origin") == "null"
    element = frame.frame_element()
    page.wait_for_function("() => document.querySelector('iframe').height !== '338'")
    inner = frame.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    assert int(element.get_attribute("height")) == min(1000, max(200, inner))
    sign_up_in(frame)
    assert_confirmation_email_arrives(site)
    assert recorded_origin(site) == site.host.origin
    assert_only_our_hosts(page, site)


def test_a_site_the_campaign_did_not_list_cannot_frame_the_widget(page, site):
    refusals = []
    page.on("console", lambda message: refusals.append(message.text)
            if "frame-ancestors" in message.text else None)
    page.goto(site.stranger.origin + "/script")
    page.wait_for_function("document.querySelectorAll('iframe').length === 1")
    page.wait_for_load_state("load")
    for _attempt in range(50):
        if refusals:
            break
        page.wait_for_timeout(100)
    assert refusals, "Chromium did not report the frame-ancestors refusal"
    for frame in page.frames[1:]:
        assert frame.locator("#signup").count() == 0


def test_the_loader_ignores_height_messages_from_other_origins(page, site):
    page.goto(site.host.origin + "/script")
    (frame,) = wait_for_widgets(page, site)
    frame_fits_its_content(page, frame)
    element = frame.frame_element()
    height = element.evaluate("e => e.getBoundingClientRect().height")
    # The host page itself (another origin than the widget) forges a resize message.
    page.evaluate("""() => window.postMessage(
        {type: "consent-widget:height", height: 3000}, "*")""")
    page.wait_for_timeout(300)
    assert element.evaluate("e => e.getBoundingClientRect().height") == height

