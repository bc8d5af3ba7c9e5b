"""Answering a supporter: look them up, see their history, export everything held about them
(GDPR Art. 15), erase them after a confirmation (Art. 17), send their manage link again.

Viewers see; only owners export, erase and resend, which hand out or destroy personal data.
"""
from __future__ import annotations

import json

from flask import Response, abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext

from .. import db, ledger, lifecycle, mail, receipts, state
from .. import supporters as people
from ..emails import lookup_key
from ..models import utcnow
from . import CAMPAIGN, log, render, route


@route("/c/<slug>/supporters", access=CAMPAIGN, read="viewer", write="viewer",
       methods=["GET", "POST"])
def supporters():
    """The lookup form. It posts, and redirects to the supporter's page by their opaque id,
    so that an address typed here never lands in a URL, a log line or the browser's history."""
    if request.method == "POST":
        query = request.form.get("query", "")
        subject = people.find(db.session(), g.campaign, query,
                                  lookup_key(current_app.config))
        if subject is not None:
            return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                                    subject_id=subject.public_id))
        return render("supporters.html", not_found=True), 404
    return render("supporters.html", not_found=False)


def _subject(subject_id: str):
    subject = None
    if len(subject_id) <= 40:
        subject = ledger.subject_by_public_id(db.session(), g.campaign, subject_id)
    if subject is None:
        abort(404)
    return subject


@route("/c/<slug>/supporters/<subject_id>", access=CAMPAIGN, read="viewer", methods=["GET"])
def supporter(subject_id):
    """One supporter: consents now, history, receipts, emails and webhook deliveries."""
    session, campaign = db.session(), g.campaign
    subject = _subject(subject_id)
    history = people.events_of(session, campaign, subject)
    log("supporter.lookup", target=subject.public_id)
    db.session().commit()
    return render("supporter.html", subject=subject,
                  states=state.states_of(session, campaign, subject), now=utcnow(),
                  effective=state.effective_status, history=history,
                  notices=people.notices_of(session, campaign, history),
                  receipts=[(r, receipts.decode(r)) for r in
                            people.receipts_of(session, campaign, subject)],
                  signups=people.signups_of(session, campaign, subject),
                  deliveries=people.deliveries(session, campaign, subject, history))


@route("/c/<slug>/supporters/<subject_id>/receipts/<receipt_id>.jwt", access=CAMPAIGN,
       read="viewer", methods=["GET"])
def receipt_download(subject_id, receipt_id):
    """One receipt as the signed JWS the person was given."""
    subject = _subject(subject_id)
    receipt = people.receipt_of(db.session(), g.campaign, subject, receipt_id)
    if receipt is None:
        abort(404)
    response = Response(receipt.jws, mimetype="application/jwt")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="consent-receipt-{receipt.id}.jwt"'
    return response


@route("/c/<slug>/supporters/<subject_id>/export", access=CAMPAIGN, write="owner",
       methods=["POST"])
def export(subject_id):
    """Everything held about the person, as a JSON file (GDPR Art. 15)."""
    subject = _subject(subject_id)
    document = people.access_export(db.session(), g.campaign, subject)
    log("supporter.export", target=subject.public_id)
    db.session().commit()
    response = Response(json.dumps(document, ensure_ascii=False, indent=2),
                        mimetype="application/json")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="access-{g.campaign.slug}-{subject.public_id}.json"'
    return response


@route("/c/<slug>/supporters/<subject_id>/erase", access=CAMPAIGN, read="owner", write="owner",
       methods=["GET", "POST"])
def erase(subject_id):
    """GET: what erasure does and keeps. POST with the box ticked: erase, as the command does."""
    subject = _subject(subject_id)
    if request.method == "GET":
        return render("erase.html", subject=subject, error=None)
    if request.form.get("confirm") != "yes":
        return render("erase.html", subject=subject, error=gettext(
            "Tick the box to confirm: erasure cannot be undone.")), 400
    done = lifecycle.erase_subject(db.session(), g.campaign, subject, method="console_erasure")
    log("supporter.erase", target=subject.public_id,
        detail={"withdrawal_receipt_id": done["withdrawal_receipt_id"]})
    db.session().commit()
    flash(gettext("The supporter's data is erased; the platforms are told to delete theirs."),
          "success")
    return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                            subject_id=subject.public_id))


@route("/c/<slug>/supporters/<subject_id>/resend", access=CAMPAIGN, write="owner",
       methods=["POST"])
def resend_link(subject_id):
    """Email the person their manage link again."""
    subject = _subject(subject_id)
    if mail.queue_manage_link(db.session(), g.campaign, subject, g.campaign.locale) is None:
        flash(gettext("This supporter's address was erased: there is no one to write to."),
              "error")
        return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                                subject_id=subject.public_id))
    log("supporter.resend_link", target=subject.public_id)
    db.session().commit()
    flash(gettext("The link is on its way."), "success")
    return redirect(url_for("admin.supporter", slug=g.campaign.slug,
                            subject_id=subject.public_id))
