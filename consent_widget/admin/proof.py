"""Proof for auditors: the campaign's proof export as a background job with its progress and a
download, and the one-page compliance summary to hand to the CNIL."""
from __future__ import annotations

import os

from flask import abort, current_app, flash, g, redirect, send_file, url_for
from flask_babel import gettext
from flask_login import current_user

from .. import db, notices, oauth, proof_jobs, webhooks
from ..models import utcnow
from . import CAMPAIGN, log, render, route


@route("/c/<slug>/proof", access=CAMPAIGN, read="viewer", methods=["GET"])
def proof():
    """The campaign's proof exports: start one, follow it, download it."""
    jobs = proof_jobs.jobs(db.session(), g.campaign)
    running = any(job.status in (proof_jobs.QUEUED, proof_jobs.RUNNING) for job in jobs)
    return render("proof.html", jobs=jobs, running=running)


@route("/c/<slug>/proof/exports", access=CAMPAIGN, write="owner", methods=["POST"])
def start_export():
    """Queue an export and run it in the background."""
    job = proof_jobs.create(db.session(), g.campaign, current_user.row.id)
    log("proof.export", target=job.public_id)
    db.session().commit()
    proof_jobs.start(current_app._get_current_object(), job.id)
    flash(gettext("The export has started; this page shows its progress."), "success")
    return redirect(url_for("admin.proof", slug=g.campaign.slug))


@route("/c/<slug>/proof/exports/<job_id>.zip", access=CAMPAIGN, read="owner", methods=["GET"])
def download_export(job_id):
    """A finished export's archive."""
    job = proof_jobs.job(db.session(), g.campaign, job_id)
    if job is None or job.status != proof_jobs.DONE or not os.path.exists(job.path):
        abort(404)
    log("proof.download", target=job.public_id)
    db.session().commit()
    return send_file(job.path, mimetype="application/zip", as_attachment=True,
                     download_name=os.path.basename(job.path))


@route("/c/<slug>/compliance", access=CAMPAIGN, read="viewer", methods=["GET"])
def compliance():
    """What is asked and in which words, how consent is recorded and proven, how withdrawal
    reaches the CRM, the chain's head and its last verification; printable."""
    session, campaign = db.session(), g.campaign
    texts = [(purpose, network, locale, notices.item_label(campaign, purpose, network),
              notices.current_notice(session, campaign, purpose, network, locale,
                                     record=False))
             for purpose, network in notices.offered_items(campaign)
             for locale in notices.LOCALES]
    base = current_app.config["BASE_URL"].rstrip("/")
    return render("compliance.html", texts=texts, now=utcnow(),
                  check=proof_jobs.last_check(session, campaign),
                  endpoints=webhooks.endpoints(session, campaign),
                  clients=[c for c in oauth.list_clients(session, campaign)
                           if c.revoked_at is None],
                  jwks_url=base + "/.well-known/jwks.json",
                  check_url=base + "/api/v1/consents/check")


@route("/c/<slug>/compliance/verify", access=CAMPAIGN, write="viewer", methods=["POST"])
def verify():
    """Verify the chain now and keep the outcome (a check changes nothing in the ledger)."""
    check = proof_jobs.verify_and_record(db.session(), g.campaign)
    log("ledger.verify", detail={"ok": check.ok, "events": check.events})
    db.session().commit()
    if check.ok:
        flash(gettext("The chain verifies: %(num)d events.", num=check.events), "success")
    else:
        flash(gettext("The chain is broken: %(reason)s", reason=check.reason), "error")
    return redirect(url_for("admin.compliance", slug=g.campaign.slug))
