"""Small actions the tests repeat: sign someone up through the domain, confirm, read state."""
from __future__ import annotations

import html
import re

from sqlalchemy import func, select

from consent_widget import db, ledger, notices, state
from consent_widget.emails import lookup_key
from consent_widget.models import Campaign, ConsentEvent, ConsentState, Signup


def sign_up(app, slug: str, email: str, newsletter: bool = False, networks=(),
            locale: str = "fr", origin: str = "") -> str:
    """Record a widget submission as the widget would; return the signup's public id."""
    with app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
            choices = []
            for purpose, network in notices.offered_items(campaign):
                notice = notices.current_notice(session, campaign, purpose, network, locale)
                ticked = newsletter if purpose == "newsletter" else network in networks
                choices.append(ledger.Choice(purpose, network, notice, ticked))
            signup = ledger.record_signup(session, campaign, email, choices,
                                          key=lookup_key(app.config), locale=locale,
                                          origin=origin)
            return signup.public_id


def confirm(app, signup_public_id: str):
    """Confirm a signup as its emailed link would; return the receipt id or None."""
    with app.app_context():
        with db.transaction() as session:
            signup = session.scalars(select(Signup).where(Signup.public_id == signup_public_id)).one()
            campaign = session.get(Campaign, signup.campaign_id)
            receipt = ledger.confirm(session, campaign, signup)
            return receipt.id if receipt else None


def give(app, slug: str, email: str, newsletter: bool = False, networks=()):
    """Sign up and confirm in one go; return the receipt id."""
    return confirm(app, sign_up(app, slug, email, newsletter, networks))


def status(app, slug: str, email: str, purpose: str, network: str = "") -> str:
    """The effective status the check API would answer."""
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
        subject = ledger.find_subject(session, campaign, email, lookup_key(app.config))
        return state.state_of(session, campaign, subject, purpose, network).status


def counts(app) -> dict:
    """How many events, states and signups exist: to assert that bad input changed nothing."""
    with app.app_context():
        session = db.session()
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (ConsentEvent, ConsentState, Signup)}


def widget_form(client, email: str, path: str = "/w/demo") -> dict:
    """What a browser submits from the widget page at ``path``: its hidden fields (CSRF token,
    lang, origin), the email and the newsletter box ticked."""
    page = client.get(path).get_data(as_text=True)
    fields = {}
    for tag in re.findall(r'<input\b[^>]*type="hidden"[^>]*>', page):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    assert "csrf_token" in fields
    return {**fields, "email": email, "newsletter": "y"}


def withdraw(app, slug: str, email: str, purpose: str | None = None,
             network: str | None = None, *, locale: str = "fr", now=None):
    """Withdraw the person's consents matching ``purpose`` and ``network`` (None: any) as the
    manage page would; return the new receipt, or None when nothing was given."""
    with app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
            subject = ledger.find_subject(session, campaign, email, lookup_key(app.config))
            return ledger.withdraw(session, campaign, subject, purpose, network,
                                   method="manage_page", locale=locale, now=now)
