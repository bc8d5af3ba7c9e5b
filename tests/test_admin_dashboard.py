"""The dashboard: exact counts from the ledger and the signups, per day and now, on both
databases; the chart is a script-free SVG; another campaign's rows never count."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from sqlalchemy import select, update

from consent_widget import db, stats
from consent_widget.campaigns import create_campaign
from consent_widget.models import Campaign, ConsentState, Signup, utcnow

from console import console
from helpers import confirm, give, sign_up, withdraw


def _campaign(app, slug="demo") -> Campaign:
    with app.app_context():
        return db.session().scalars(select(Campaign).where(Campaign.slug == slug)).one()


def _age_signup(app, public_id: str, days: int) -> None:
    """Move a signup (and its confirmation) ``days`` back in time."""
    with app.app_context():
        with db.transaction() as session:
            signup = session.scalars(select(Signup).where(Signup.public_id == public_id)).one()
            signup.created_at -= timedelta(days=days)
            if signup.confirmed_at:
                signup.confirmed_at -= timedelta(days=days)


def _fill(app):
    """demo: 3 signups today (2 confirmed, 1 with GPC), 1 confirmed two days ago, one
    withdrawal of the newsletter today; other: one confirmed signup that must never count."""
    first = sign_up(app, "demo", "ana@marie2027.test", newsletter=True, networks=["facebook"])
    confirm(app, first)
    second = sign_up(app, "demo", "bob@marie2027.test", newsletter=True)
    confirm(app, second)
    third = sign_up(app, "demo", "cleo@marie2027.test", newsletter=True)
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(Signup).where(Signup.public_id == third).values(gpc=True))
    old = sign_up(app, "demo", "dan@marie2027.test", networks=["linkedin"])
    confirm(app, old)
    _age_signup(app, old, 2)
    withdraw(app, "demo", "bob@marie2027.test", "newsletter")
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p",
                            networks=["facebook"])
    give(app, "other", "eve@other.test", newsletter=True, networks=["facebook"])


def test_the_figures_count_exactly_what_happened(app, campaign):
    _fill(app)
    now = utcnow()
    with app.app_context():
        session = db.session()
        demo = _campaign(app)
        activity = stats.activity(session, demo, now, 7)
        assert len(activity.days) == 7 and activity.days[-1] == now.date()
        assert activity.signups[-1] == 3 and activity.signups[-3] == 1
        assert sum(activity.signups) == 4
        assert activity.confirmations[-1] == 2 and activity.confirmations[-3] == 1
        assert activity.withdrawals == [0] * 6 + [1]
        rates = stats.rates(session, demo, now, 7)
        assert (rates.signups, rates.confirmed, rates.gpc) == (4, 3, 1)
        assert rates.confirmation_rate == 0.75 and rates.gpc_share == 0.25
        counts = stats.consent_counts(session, demo, now)
        # Dan ticked no newsletter: refused; Cleo has not confirmed: requested.
        assert counts[("newsletter", "")] == {"given": 1, "withdrawn": 1, "requested": 1,
                                              "refused": 1}
        assert counts[("social_matching", "facebook")]["given"] == 1
        assert counts[("social_matching", "linkedin")]["given"] == 1
        # The default period, 30 days, still holds the signup of two days ago.
        assert stats.rates(session, demo, now, 30).signups == 4


def test_a_consent_past_its_validity_counts_as_expired(app, campaign):
    confirm(app, sign_up(app, "demo", "ana@marie2027.test", newsletter=True))
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ConsentState).values(expires_at=utcnow() - timedelta(days=1)))
        counts = stats.consent_counts(db.session(), _campaign(app), utcnow())
    assert counts[("newsletter", "")] == {"expired": 1}


def test_the_page_shows_the_same_numbers_in_its_tables(app, campaign):
    _fill(app)
    owner = console(app, "owner@marie2027.test", slug="demo", role="viewer")
    page = owner.get("/admin/c/demo/?days=7&lang=en").get_data(as_text=True)
    today = utcnow().date().isoformat()
    row = re.search(rf"<th scope=\"row\">{today}</th>(.*?)</tr>", page, re.DOTALL).group(1)
    assert re.findall(r">(\d+)<", row) == ["3", "2", "1"]
    assert "75 %" in page and "25 %" in page
    newsletter = re.search(r"The newsletter of Marie 2027 by email</th>(.*?)</tr>", page,
                           re.DOTALL).group(1)
    assert re.findall(r">(\d+)<", newsletter) == ["1", "1", "1", "1", "0"]


def test_the_outbox_and_failing_endpoints_are_shown(app, campaign):
    confirm(app, sign_up(app, "demo", "ana@marie2027.test", newsletter=True))
    with app.app_context():
        queues = {q.kind: q for q in stats.outbox_depth(db.session(), _campaign(app))}
    assert queues["email"].pending == 2 and queues["email"].oldest is not None
    assert queues["webhook"].pending == 0
    owner = console(app, "owner@marie2027.test", slug="demo")
    page = owner.get("/admin/c/demo/?lang=en").get_data(as_text=True)
    assert "No webhook endpoint is failing." in page


def test_the_chart_is_an_svg_without_script_or_outside_reference(app, campaign):
    _fill(app)
    owner = console(app, "owner@marie2027.test", slug="demo", role="viewer")
    response = owner.get("/admin/c/demo/charts/activity.svg?days=90")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    body = response.get_data()
    root = ET.fromstring(body)
    assert root.tag.endswith("svg")
    assert b"<script" not in body
    references = re.findall(rb'(?:href|src)="([^"#][^"]*)"', body)
    assert references == []
    assert re.findall(rb"https?://[^\"' ]+", body) == [] or all(
        url.startswith((b"http://www.w3.org/", b"http://pygal.org", b"https://pygal.org",
                        b"https://github.com/Kozea/pygal")) for url in
        re.findall(rb"https?://[^\"' )]+", body))


def test_a_bad_period_falls_back_to_thirty_days(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo", role="viewer")
    for value in ("abc", "-1", "100000000000000000000", "7.5", ""):
        response = owner.get(f"/admin/c/demo/?days={value}")
        assert response.status_code == 200
        assert 'value="30" selected' in response.get_data(as_text=True)
