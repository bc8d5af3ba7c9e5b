"""Versioned consent texts per purpose, network and language, and the hash of what was shown.

A box shows the text the campaign's team published for it, or else the catalogue's, built from
the translation catalogues and the campaign's details. Each distinct text gets a version number
the first time it is shown; the ledger records which version each consent was given on, and the
receipt carries the SHA-256 of the exact text.
"""
from __future__ import annotations

import hashlib

from flask import current_app
from flask_babel import force_locale
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from .i18n import gettext
from .models import NEWSLETTER, SOCIAL_MATCHING, Campaign, Notice

NETWORK_LABELS = {"facebook": "Facebook", "linkedin": "LinkedIn", "twitter": "X (Twitter)",
                  "meetup": "Meetup"}
LOCALES = ("fr", "en")

#: How often :func:`current_notice` reads again after losing the race to record a version.
_RECORD_ATTEMPTS = 5
_CACHE = "consent_notices"
_COLUMNS = [column.key for column in Notice.__table__.columns]


def network_label(network: str) -> str:
    """The name a person knows a network by."""
    return NETWORK_LABELS.get(network, network.capitalize())


def item_label(campaign: Campaign, purpose: str, network: str) -> str:
    """A short name of what a box asks, in the current locale, for pages and emails."""
    if purpose == NEWSLETTER:
        return gettext("The newsletter of %(campaign)s by email", campaign=campaign.name)
    if purpose == SOCIAL_MATCHING:
        return gettext("Matching your email address with your public %(network)s profile",
                       network=network_label(network))
    raise ValueError(f"unknown purpose {purpose!r}")


def text_key(purpose: str, network: str, locale: str) -> str:
    """The key of one box's text in a campaign's published texts: ``"purpose:network:locale"``."""
    return f"{purpose}:{network}:{locale}"


def notice_text(campaign: Campaign, purpose: str, network: str, locale: str) -> str:
    """The exact consent text for one box, in ``locale``: the text the campaign's team
    published for it (see :mod:`consent_widget.consent_texts`), else the catalogue's."""
    published = (campaign.notice_texts or {}).get(text_key(purpose, network, locale))
    if published:
        return published
    return catalogue_text(campaign, purpose, network, locale)


def catalogue_text(campaign: Campaign, purpose: str, network: str, locale: str) -> str:
    """The catalogue's consent text for one box, in ``locale``, with the campaign's details."""
    with force_locale(locale):
        if purpose == NEWSLETTER:
            return gettext(
                "Send me the newsletter of %(campaign)s by email. %(controller)s will use my "
                "email address only to send it. I can unsubscribe at any time with the link "
                "in every email.", campaign=campaign.name, controller=campaign.controller)
        if purpose == SOCIAL_MATCHING:
            return gettext(
                "Allow %(controller)s to look up my email address on %(network)s and copy my "
                "public %(network)s profile, location and biography into the campaign's "
                "supporter database, to know its supporters better. This is not consent to "
                "targeted political advertising. I can withdraw at any time with the link in "
                "every email; the copied data is then deleted.",
                controller=campaign.controller, network=network_label(network))
    raise ValueError(f"unknown purpose {purpose!r}")


def text_sha256(text: str) -> str:
    """SHA-256 (hex) of the UTF-8 text as shown."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: Built once: every view of the form page asks it for each box.
_LATEST = (select(Notice).where(Notice.campaign_id == bindparam("campaign"),
                                Notice.purpose == bindparam("purpose"),
                                Notice.network == bindparam("network"),
                                Notice.locale == bindparam("locale"))
           .order_by(Notice.version.desc()).limit(1))


def current_notice(session: Session, campaign: Campaign, purpose: str, network: str,
                   locale: str, *, record: bool = True) -> Notice | None:
    """The notice for the text shown now, recording a new version when the text changed.

    With ``record=False`` nothing is written: None stands for a text not recorded yet, which
    lets a page read in a transaction that does not wait for the write lock, and take it only
    the first time a text is shown.
    """
    text = notice_text(campaign, purpose, network, locale)
    digest = text_sha256(text)
    for _ in range(_RECORD_ATTEMPTS):
        latest = session.scalars(_LATEST, {"campaign": campaign.id, "purpose": purpose,
                                           "network": network, "locale": locale}).first()
        if latest is not None and latest.text_sha256 == digest:
            return latest
        if not record:
            return None
        notice = Notice(campaign_id=campaign.id, purpose=purpose, network=network, locale=locale,
                        version=(latest.version + 1) if latest else 1, text=text,
                        text_sha256=digest)
        try:
            # The first views of a new text race on PostgreSQL: several processes read "no such
            # version" and insert the same one. The unique constraint lets one win; the others
            # roll back only this savepoint and read the winner's row on the next turn.
            with session.begin_nested():
                session.add(notice)
        except IntegrityError:
            continue
        return notice
    raise RuntimeError(f"could not record a notice version for {purpose}:{network}")


def offered_items(campaign: Campaign) -> list[tuple[str, str]]:
    """Every (purpose, network) a campaign's widget asks about, newsletter first."""
    return [(NEWSLETTER, "")] + [(SOCIAL_MATCHING, network) for network in campaign.networks]


def by_ids(session: Session, campaign: Campaign, notice_ids) -> dict[int, Notice]:
    """The campaign's notices among ``notice_ids``, by id.

    A notice is never changed once recorded (a new text is a new version), so each process
    keeps the ones it has read, per app: detached copies, which no session can expire or
    reload from another thread.
    """
    cache = current_app.extensions.setdefault(_CACHE, {})
    wanted = {i for i in notice_ids if isinstance(i, int) and not isinstance(i, bool)}
    missing = [i for i in wanted if i not in cache]
    if missing:
        for row in session.scalars(select(Notice).where(Notice.id.in_(missing))):
            copy = Notice(**{column: getattr(row, column) for column in _COLUMNS})
            make_transient_to_detached(copy)
            cache[row.id] = copy
    return {i: cache[i] for i in sorted(wanted)
            if i in cache and cache[i].campaign_id == campaign.id}


def shown(session: Session, campaign: Campaign, notice_ids) -> list[Notice]:
    """The campaign's notices among ``notice_ids`` (ids from a signed form token)."""
    return list(by_ids(session, campaign, list(notice_ids)[:64]).values())
