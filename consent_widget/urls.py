"""Absolute URLs of the pages that emails, receipts and embed code point to.

They are built from ``BASE_URL`` rather than the current request, because emails are rendered
by workers and CLI commands that have no request, and must point at the public address.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import current_app

from . import tokens


def external(path: str) -> str:
    """``BASE_URL`` joined with an absolute ``path``."""
    return current_app.config["BASE_URL"].rstrip("/") + path


def widget_url(campaign) -> str:
    """The widget page of a campaign."""
    return external(f"/w/{quote(campaign.slug)}")


def confirm_url(campaign, signup) -> str:
    """The double opt-in link of a signup."""
    return external(f"/w/{quote(campaign.slug)}/confirm/{tokens.confirm_token(signup)}")


def manage_url(campaign, subject) -> str:
    """The link, in every email, to see and withdraw a subject's consents."""
    return external(f"/w/{quote(campaign.slug)}/manage/"
                    f"{tokens.subject_token(tokens.MANAGE, subject)}")


def unsubscribe_url(campaign, subject) -> str:
    """The RFC 8058 one-click unsubscribe link for the newsletter."""
    return external(f"/w/{quote(campaign.slug)}/unsubscribe/"
                    f"{tokens.subject_token(tokens.UNSUBSCRIBE, subject)}")
