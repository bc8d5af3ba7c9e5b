"""A campaign's own consent texts: publishing one, going back to the catalogue's, the versions
of each box's text and the differences between two of them.

A published text is kept in ``Campaign.notice_texts`` under ``"purpose:network:locale"``, which
:func:`consent_widget.notices.notice_text` reads, so the widget shows it with no extra query.
Publishing records the new notice version at once, in the same transaction: the ledger and
the receipts name versions, and a version never changes, so every consent given earlier
keeps pointing to the text that was on the person's screen.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from flask_babel import force_locale, gettext
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import notices
from .models import NEWSLETTER, AuditEntry, Campaign, Notice
from .text_checks import Problem, check_text, clean

#: The audit log's action for a publication; its detail names the version it made.
PUBLISH = "text.publish"
CUSTOM, CATALOGUE = "custom", "catalogue"


class TextRefused(ValueError):
    """A text cannot be published; ``problems`` say why, each in the person's language."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


@dataclass(frozen=True)
class Item:
    """One box of the widget in one language."""

    purpose: str
    network: str
    locale: str

    @property
    def key(self) -> str:
        """The key of its text in ``Campaign.notice_texts`` and the audit log's target."""
        return notices.text_key(self.purpose, self.network, self.locale)

    @property
    def slug(self) -> str:
        """How the console's URLs name the box: ``newsletter`` or ``social_matching.facebook``."""
        return f"{self.purpose}.{self.network}" if self.network else self.purpose


@dataclass(frozen=True)
class Version:
    """A recorded version of a box's text, and whether the campaign wrote it."""

    notice: Notice
    source: str  # CUSTOM or CATALOGUE


def items(campaign: Campaign) -> list[Item]:
    """Every box the campaign's widget offers, in every language, newsletter first."""
    return [Item(purpose, network, locale) for purpose, network in notices.offered_items(campaign)
            for locale in notices.LOCALES]


def find_item(campaign: Campaign, slug: str, locale: str) -> Item | None:
    """The box a console URL names, if the campaign offers it in that language."""
    return next((item for item in items(campaign)
                 if item.slug == slug and item.locale == locale), None)


def is_custom(campaign: Campaign, item: Item) -> bool:
    """Whether the box shows a text the campaign published rather than the catalogue's."""
    return bool((campaign.notice_texts or {}).get(item.key))


def box_label(item: Item) -> str:
    """The label the widget shows beside the box, in the box's language."""
    with force_locale(item.locale):
        if item.purpose == NEWSLETTER:
            return gettext("Receive the newsletter by email")
        return gettext("Link my %(network)s profile", network=notices.network_label(item.network))


def current_text(campaign: Campaign, item: Item) -> str:
    """The text the box shows now."""
    return notices.notice_text(campaign, item.purpose, item.network, item.locale)


def catalogue_text(campaign: Campaign, item: Item) -> str:
    """The catalogue's text for the box, with the campaign's details."""
    return notices.catalogue_text(campaign, item.purpose, item.network, item.locale)


def current_version(session: Session, campaign: Campaign, item: Item) -> Notice | None:
    """The recorded version of the text the box shows now; None if not recorded yet."""
    return notices.current_notice(session, campaign, item.purpose, item.network, item.locale,
                                  record=False)


def publish(session: Session, campaign: Campaign, purpose: str, network: str, locale: str,
            text: str) -> Notice:
    """Publish ``text`` as the box's text and record its notice version, in the caller's
    transaction; raise :class:`TextRefused` (nothing changed) when a check refuses it.

    A text equal to the catalogue's is stored as no custom text at all, so that the box follows
    the catalogue again (a new controller name, say).
    """
    return _publish(session, campaign, _offered(campaign, purpose, network, locale), clean(text))


def reset(session: Session, campaign: Campaign, purpose: str, network: str,
          locale: str) -> Notice:
    """Go back to the catalogue's text for the box: a publication like any other."""
    return _publish(session, campaign, _offered(campaign, purpose, network, locale), None)


def _offered(campaign: Campaign, purpose: str, network: str, locale: str) -> Item:
    item = Item(purpose, network, locale)
    if item not in items(campaign):
        raise ValueError(f"the campaign offers no box {item.key}")
    return item


def _publish(session: Session, campaign: Campaign, item: Item, text: str | None) -> Notice:
    # Read the published texts afresh under the campaign row's lock: two people publishing two
    # boxes at once would otherwise each write back a dict without the other's text.
    session.refresh(campaign, ["notice_texts"], with_for_update=True)
    catalogue = catalogue_text(campaign, item)
    candidate = catalogue if text is None else text
    if candidate == current_text(campaign, item):
        raise TextRefused([Problem("unchanged", gettext(
            "The box already shows the catalogue's text.") if text is None else gettext(
            "This text is already the one published: there is nothing to publish."))])
    problems = check_text(item.purpose, item.network, item.locale, candidate, campaign)
    if problems:
        raise TextRefused(problems)
    texts = dict(campaign.notice_texts or {})  # a new dict, so that the change is seen
    if candidate == catalogue:
        texts.pop(item.key, None)
    else:
        texts[item.key] = candidate
    campaign.notice_texts = texts
    session.flush()
    return notices.current_notice(session, campaign, item.purpose, item.network, item.locale,
                                  record=True)


def audit_detail(campaign: Campaign, item: Item, notice: Notice) -> dict:
    """What the audit log keeps of a publication: the version it made, its hash and source."""
    return {"version": notice.version, "sha256": notice.text_sha256,
            "source": CUSTOM if is_custom(campaign, item) else CATALOGUE}


def versions(session: Session, campaign: Campaign, purpose: str, network: str,
             locale: str) -> list[Version]:
    """Every recorded version of a box's text, newest first.

    A version is custom when a publication of the audit log made it; the others were
    recorded from the catalogue (the campaign's creation, a change of its settings).
    """
    item = Item(purpose, network, locale)
    rows = session.scalars(select(Notice).where(
        Notice.campaign_id == campaign.id, Notice.purpose == purpose,
        Notice.network == network, Notice.locale == locale).order_by(Notice.version.desc()))
    published = session.scalars(select(AuditEntry.detail).where(
        AuditEntry.campaign_id == campaign.id, AuditEntry.action == PUBLISH,
        AuditEntry.target == item.key))
    sources = {detail.get("version"): detail.get("source") for detail in published
               if isinstance(detail, dict)}
    return [Version(row, CUSTOM if sources.get(row.version) == CUSTOM else CATALOGUE)
            for row in rows]


_TOKENS = re.compile(r"\w+|\s+|[^\w\s]")


def diff(old_text: str, new_text: str) -> Markup:
    """The changes from ``old_text`` to ``new_text``, word by word, as HTML: removed words in
    ``<del>``, added ones in ``<ins>``, every piece of text escaped."""
    old, new = _TOKENS.findall(old_text), _TOKENS.findall(new_text)
    runs: list[list] = []  # [changed, old piece, new piece]
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        piece_old, piece_new = "".join(old[i1:i2]), "".join(new[j1:j2])
        changed = operation != "equal"
        if changed and runs and runs[-1][0]:
            runs[-1][1] += piece_old
            runs[-1][2] += piece_new
        elif changed and len(runs) > 1 and not runs[-1][0] and not runs[-1][1].strip() \
                and runs[-2][0]:
            # "drop that" → "add this" reads as one change, not two split by an equal space.
            space = runs.pop()[1]
            runs[-1][1] += space + piece_old
            runs[-1][2] += space + piece_new
        else:
            runs.append([changed, piece_old, piece_new])
    pieces = []
    for changed, piece_old, piece_new in runs:
        if not changed:
            pieces.append(escape(piece_old))
            continue
        if piece_old:
            pieces.append(Markup("<del>{}</del>").format(piece_old))
        if piece_new:
            pieces.append(Markup("<ins>{}</ins>").format(piece_new))
    return Markup("").join(pieces)
