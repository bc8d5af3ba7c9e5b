"""Commands for supporters' data and the scheduled lifecycle jobs."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .. import db, ledger
from . import campaign_or_fail, print_json


# --- subjects and lifecycle ----------------------------------------------------------------
@click.group("subject", cls=AppGroup)
def subject_group():
    """Supporters' data: erasure on request."""


@subject_group.command("erase")
@click.argument("email")
@click.option("--campaign", "slug", default=None,
              help="Only in this campaign (default: every campaign that knows the address).")
@with_appcontext
def subject_erase(email, slug):
    """Withdraw every consent of EMAIL and erase the address; the ledger stays verifiable."""
    from sqlalchemy import select
    from .. import lifecycle
    from ..emails import InvalidEmail, lookup_key
    from ..models import Campaign
    with db.transaction() as session:
        chosen = [campaign_or_fail(slug)] if slug else session.scalars(
            select(Campaign).order_by(Campaign.id)).all()
        erased = []
        for campaign in chosen:
            try:
                subject = ledger.find_subject(session, campaign, email,
                                              lookup_key(current_app.config))
            except InvalidEmail as exc:
                raise click.ClickException(f"not an email address: {exc}") from None
            if subject is not None:
                erased.append(lifecycle.erase_subject(session, campaign, subject,
                                                      method="erasure_request"))
    print_json({"erased": erased})


@click.group("jobs", cls=AppGroup)
def jobs_group():
    """The scheduled jobs the worker runs: expiry and the purge of unconfirmed signups."""


@jobs_group.command("run")
@with_appcontext
def jobs_run():
    """Run the scheduled jobs once now and print what they did."""
    from .. import lifecycle
    report = lifecycle.run_jobs(current_app._get_current_object())
    print_json({"expired": report.expired, "purged": report.purged})
