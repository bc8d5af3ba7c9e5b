"""Answering a supporter: look them up, read their record and receipts, export everything held
about them (GDPR Art. 15), erase them after a confirmation (Art. 17), send their manage link
again.

Viewers look up and read. Only owners export, erase and resend: an export hands out a person's
data in bulk, erasure destroys it, and an email goes out in the campaign's name. Every lookup,
export, erasure and resend is in the audit log, naming the person by their opaque id only.
"""
from __future__ import annotations

import json

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired, Length

from .. import db, lifecycle, receipts
from .. import supporters as people
from ..emails import lookup_key
from . import CAMPAIGN, log, render, route
from .forms import ConsoleForm


class LookupForm(ConsoleForm):
    """An email address or a subject id."""

    # As long as the longest address column; the domain says whether it is an address.
    query = StringField(_l("Email address or supporter id (sub_…)"),
                        validators=[Length(max=320)])


class EraseForm(ConsoleForm):
    """The box that must be ticked before an erasure."""

    confirm = BooleanField(_l("I confirm: erase this supporter's data. This cannot be undone."),
                           validators=[DataRequired(message=_l(
                               "Tick the box to confirm: erasure cannot be undone."))])


def _lookup_page(form: LookupForm, error: str | None = None, status: int = 200):
    return render("supporters.html", form=form, error=error), status


@route("/c/<slug>/supporters", access=CAMPAIGN, read="viewer", write="viewer",
       methods=["GET", "POST"])
def supporters():
    """The lookup form.

    It posts, and a hit redirects to the supporter's page by their opaque id: an address sent
    in a query string would land in the server's and proxies' access logs and in the browser's
    history, where no erasure reaches it.
    """
    form = LookupForm(request.form if request.method == "POST" else None)
    if request.method == "GET":
        return _lookup_page(form)
    if not form.validate():
        return _lookup_page(form, gettext("This is too long for an address or an id."), 400)
    query = form.query.data or ""
    by = "id" if query.strip().startswith(people.SUBJECT_PREFIX) else "email"
    try:
        found = people.find(db.session(), g.campaign, query, lookup_key(current_app.config))
    except people.InvalidLookup as exc:
        message = (gettext("Type an email address or a supporter id.") if str(exc) == "empty"
                   else gettext("This is neither an email address nor a supporter id (sub_…)."))
        return _lookup_page(form, message, 400)
    if found is None:
        # A miss is a lookup too: who searched, and how; never what was typed.
        log("supporter.lookup", detail={"by": by, "found": False})
        db.session().commit()
        return _lookup_page(LookupForm(), gettext(
            "No supporter of this campaign has this address or id."), 404)
    return redirect(url_for("admin.supporter", slug=g.campaign.slug, subject_id=found.public_id))


def _subject(subject_id: str):
    found = people.subject(db.session(), g.campaign, subject_id)
    if found is None:
        abort(404)
    return found


def _record_page(person, *, error: str | None = None, status: int = 200):
    session, campaign = db.session(), g.campaign
    entries = people.history(session, campaign, person)
    return render("supporter.html", subject=person, error=error,
                  states=people.current_states(session, campaign, person),
                  history=entries, receipts=people.receipts_of(session, campaign, person),
                  signups=people.signups_of(session, campaign, person),
                  emails=people.emails_sent(session, campaign, person),
                  deliveries=people.webhook_deliveries(session, campaign, person,
                                                       entries)), status


@route("/c/<slug>/supporters/<subject_id>", access=CAMPAIGN, read="viewer", methods=["GET"])
def supporter(subject_id):
    """One supporter: consents now, history, receipts, signups, emails, webhook deliveries."""
    person = _subject(subject_id)
    # Every view of a person's record is a lookup, however one came to it (the form, a
    # bookmark, a colleague's link).
    log("supporter.lookup", target=person.public_id)
    db.session().commit()
    return _record_page(person)


@route("/c/<slug>/supporters/<subject_id>/receipts/<receipt_id>", access=CAMPAIGN,
       read="viewer", methods=["GET"])
def receipt(subject_id, receipt_id):
    """One receipt in the human-readable form the person reads, and its claims as signed."""
    person = _subject(subject_id)
    found = people.receipt_of(db.session(), g.campaign, person, receipt_id)
    if found is None:
        abort(404)
    return render("supporter_receipt.html", subject=person, receipt=found,
                  claims=receipts.decode(found))


@route("/c/<slug>/supporters/<subject_id>/receipts/<receipt_id>/download", access=CAMPAIGN,
       read="viewer", methods=["GET"])
def receipt_download(subject_id, receipt_id):
    """One receipt as the signed JWS the person was given, named as in their email."""
    person = _subject(subject_id)
    found = people.receipt_of(db.session(), g.campaign, person, receipt_id)
    if found is None:
        abort(404)
    response = Response(found.jws, mimetype="application/jwt")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="consent-receipt-{found.id}.jwt"'
    return response


@route("/c/<slug>/supporters/<subject_id>/export", access=CAMPAIGN, write="owner",
       methods=["POST"])
def export(subject_id):
    """Everything held about the person, as a JSON file to hand them (GDPR Art. 15).

    A POST from a button, not a link: a download of a person's whole record is an action the
    audit log must see, and no prefetch or crawler may start it.
    """
    person = _subject(subject_id)
    document = people.access_export(db.session(), g.campaign, person)
    log("supporter.export", target=person.public_id)
    db.session().commit()
    response = Response(json.dumps(document, ensure_ascii=False, indent=2),
                        mimetype="application/json")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="access-export-{g.campaign.slug}-{person.public_id}.json"'
    return response


@route("/c/<slug>/supporters/<subject_id>/erase", access=CAMPAIGN, read="owner", write="owner",
       methods=["GET", "POST"])
def erase(subject_id):
    """GET: exactly what erasure removes and what it keeps. POST with the box ticked: erase,
    with the very function the ``subject erase`` command calls."""
    person = _subject(subject_id)
    form = EraseForm(request.form if request.method == "POST" else None)
    if request.method == "GET":
        return render("erase.html", subject=person, form=form, error=None)
    if person.erased_at is not None:
        return render("erase.html", subject=person, form=form, error=gettext(
            "This supporter's data was erased already.")), 409
    if not form.validate():
        return render("erase.html", subject=person, form=form, error=gettext(
            "Nothing was erased: tick the box to confirm.")), 400
    done = lifecycle.erase_subject(db.session(), g.campaign, person, method="erasure_request")
    log("supporter.erase", target=person.public_id,
        detail={"withdrawal_receipt_id": done["withdrawal_receipt_id"]})
    db.session().commit()
    flash(gettext("The supporter's data is erased; the platforms are told to delete theirs."),
          "success")
    return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                            subject_id=person.public_id))


@route("/c/<slug>/supporters/<subject_id>/resend", access=CAMPAIGN, write="owner",
       methods=["POST"])
def resend_link(subject_id):
    """Email the person their manage link again, through the outbox, in their language."""
    person = _subject(subject_id)
    if not people.resend_manage_link(db.session(), g.campaign, person):
        return _record_page(person, status=409, error=gettext(
            "This supporter's address was erased: there is no one to write to."))
    log("supporter.resend_link", target=person.public_id)
    db.session().commit()
    flash(gettext("The manage link is on its way to the supporter."), "success")
    return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                            subject_id=person.public_id))
