"""A campaign's consent texts: every box in every language, editing and publishing a text
(editors and owners), going back to the catalogue's, and the versions with their differences."""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from wtforms import TextAreaField
from wtforms.validators import Length

from .. import consent_texts, db, text_checks
from ..consent_texts import Item
from . import CAMPAIGN, EDITOR, can, log, render, route
from .forms import ConsoleForm

LOCALE_NAMES = {"fr": "Français", "en": "English"}


class TextForm(ConsoleForm):
    """The text of one box; the checks of :mod:`consent_widget.text_checks` judge it."""

    # A bound well above the checks' own, so that a huge post is turned down before any check.
    text = TextAreaField(_l("Text of the box"), validators=[Length(
        max=4 * text_checks.MAX_LENGTH,
        message=_l("This text is far longer than a consent text can be."))])


def _item(item: str, locale: str) -> Item:
    found = consent_texts.find_item(g.campaign, item, locale)
    if found is None:
        abort(404)
    return found


def _facts(item: Item) -> dict:
    """What every page about one box shows of it."""
    campaign = g.campaign
    return {"item": item, "label": consent_texts.box_label(item),
            "locale_name": LOCALE_NAMES[item.locale],
            "notice": consent_texts.current_version(db.session(), campaign, item),
            "custom": consent_texts.is_custom(campaign, item),
            "current": consent_texts.current_text(campaign, item)}


@route("/c/<slug>/texts", access=CAMPAIGN, read="viewer", write="editor", methods=["GET"])
def texts():
    """Every box of the widget in every language, with the version it shows now."""
    rows = [_facts(item) for item in consent_texts.items(g.campaign)]
    return render("texts.html", rows=rows)


def _edit_page(item: Item, form: TextForm, *, proposed: str | None = None, problems=(),
               refused: bool = False, status: int = 200):
    facts = _facts(item)
    shown = facts["current"] if proposed is None else proposed
    changes = (consent_texts.diff(facts["current"], proposed)
               if proposed is not None and proposed != facts["current"] else None)
    return render("text_edit.html", form=form, preview=shown, proposed=proposed,
                  problems=problems, refused=refused, changes=changes,
                  guidance=text_checks.guidance(item.purpose, item.network, g.campaign),
                  catalogue=consent_texts.catalogue_text(g.campaign, item), **facts), status


@route("/c/<slug>/texts/<item>/<locale>", access=CAMPAIGN, read="viewer", write="editor",
       methods=["GET", "POST"])
def text_edit(item, locale):
    """One box's text: read by all, previewed and published by editors and owners."""
    box = _item(item, locale)
    if request.method == "GET":
        return _edit_page(box, TextForm(data={"text": consent_texts.current_text(g.campaign,
                                                                                  box)}))
    form = TextForm(request.form)
    if not form.validate():
        return _edit_page(box, form, status=400)
    proposed = text_checks.clean(form.text.data)
    if request.form.get("action") != "publish":
        problems = text_checks.check_text(box.purpose, box.network, box.locale, proposed,
                                          g.campaign)
        return _edit_page(box, form, proposed=proposed, problems=problems)
    try:
        notice = consent_texts.publish(db.session(), g.campaign, box.purpose, box.network,
                                       box.locale, proposed)
    except consent_texts.TextRefused as refused:
        db.session().rollback()
        return _edit_page(box, form, proposed=proposed, problems=refused.problems, refused=True,
                          status=400)
    return _published(box, notice)


@route("/c/<slug>/texts/<item>/<locale>/reset", access=CAMPAIGN, write="editor",
       methods=["POST"])
def text_reset(item, locale):
    """Go back to the catalogue's text: published as a new version like any text."""
    box = _item(item, locale)
    try:
        notice = consent_texts.reset(db.session(), g.campaign, box.purpose, box.network,
                                     box.locale)
    except consent_texts.TextRefused as refused:
        db.session().rollback()
        form = TextForm(data={"text": consent_texts.current_text(g.campaign, box)})
        return _edit_page(box, form, problems=refused.problems, refused=True,
                          status=400)
    return _published(box, notice)


def _published(box: Item, notice):
    log(consent_texts.PUBLISH, target=box.key,
        detail=consent_texts.audit_detail(g.campaign, box, notice))
    db.session().commit()
    flash(gettext("Version %(version)d is published: the widget shows it from now on.",
                  version=notice.version), "success")
    return redirect(url_for("admin.text_edit", slug=g.campaign.slug, item=box.slug,
                            locale=box.locale))


def _chosen(name: str, numbers: list[int], default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) not in numbers:
        abort(400, description=gettext("There is no version %(version)s of this text.",
                                       version=raw[:20]))
    return int(raw)


@route("/c/<slug>/texts/<item>/<locale>/versions", access=CAMPAIGN, read="viewer",
       write="editor", methods=["GET"])
def text_versions(item, locale):
    """Every version of one box's text, and the differences between two of them."""
    box = _item(item, locale)
    versions = consent_texts.versions(db.session(), g.campaign, box.purpose, box.network,
                                      box.locale)
    numbers = [v.notice.version for v in versions]
    by_number = {v.notice.version: v for v in versions}
    changes = old = new = None
    if numbers:
        new = _chosen("new", numbers, numbers[0])
        old = _chosen("old", numbers, numbers[1] if len(numbers) > 1 else numbers[0])
        changes = consent_texts.diff(by_number[old].notice.text, by_number[new].notice.text)
    return render("text_versions.html", versions=versions, changes=changes, old=old, new=new,
                  numbers=numbers, can_edit=can(EDITOR), **_facts(box))
