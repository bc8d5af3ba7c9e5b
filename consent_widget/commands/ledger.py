"""Commands for signing keys, the ledger and its proof exports."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .. import chain, db
from . import campaign_or_fail, print_json


# --- keys ----------------------------------------------------------------------------------
@click.group("keys", cls=AppGroup)
def keys_group():
    """The Ed25519 keys that sign receipts and decisions."""


@keys_group.command("rotate")
@with_appcontext
def keys_rotate():
    """Make a new signing key current; old public keys stay published."""
    from .. import keys
    with db.transaction() as session:
        key = keys.rotate_key(session)
    print_json({"kid": key.kid, "alg": "EdDSA", "crv": "Ed25519",
                 "jwks_url": current_app.config["BASE_URL"] + "/.well-known/jwks.json"})


# --- ledger --------------------------------------------------------------------------------
@click.group("ledger", cls=AppGroup)
def ledger_group():
    """The tamper-evident consent ledger."""


@ledger_group.command("verify")
@click.argument("slug", required=False)
@with_appcontext
def ledger_verify(slug):
    """Recompute the hash chain of SLUG (default: every campaign); exit 1 if it is broken."""
    from sqlalchemy import select
    from ..models import Campaign
    session = db.session()
    chosen = [campaign_or_fail(slug)] if slug else session.scalars(
        select(Campaign).order_by(Campaign.id)).all()
    total = 0
    heads = {}
    from .. import proof_jobs
    for campaign in chosen:
        report = chain.verify_chain(session, campaign)
        # Kept for the console's compliance summary ("the last verification").
        proof_jobs.record_check(session, campaign, report)
        session.commit()
        if not report.ok:
            print_json({"ok": False, "campaign": campaign.slug, "events": report.events,
                         "broken_event": report.broken_event, "reason": report.reason})
            sys.exit(1)
        total += report.events
        heads[campaign.slug] = report.head
    result = {"ok": True, "events": total}
    if slug:
        result["head"] = heads[slug]
    else:
        result["heads"] = heads
    print_json(result)


@ledger_group.command("export")
@click.argument("slug")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="The archive to write (default: SLUG-proof-<UTC time>.zip here).")
@with_appcontext
def ledger_export(slug, output):
    """Write SLUG's proof export (ledger, notices, receipts, keys) for auditors."""
    import os
    from datetime import datetime, timezone
    from .. import proof_export
    path = output or f"{slug}-proof-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.zip"
    partial = path + ".part"
    # One read transaction from the lookup on: on SQLite the export holds no write lock, so a
    # live service keeps taking signups while it runs.
    with db.reading() as session:
        campaign = campaign_or_fail(slug)
        with click.progressbar(length=max(campaign.ledger_seq, 1), label="events",
                               file=sys.stderr) as bar:
            done = [0]

            def progress(count, total):
                bar.update(count - done[0])
                done[0] = count

            try:
                with open(partial, "wb") as out:
                    result = proof_export.write_export(session, campaign, out,
                                                       progress=progress)
            except BaseException:
                if os.path.exists(partial):
                    os.remove(partial)
                raise
    os.replace(partial, path)
    print_json({"file": path, **result})


@ledger_group.command("verify-export", with_appcontext=False)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def ledger_verify_export(file):
    """Verify a proof export with nothing but the file (no database, no settings); exit 1
    naming the first bad file and line."""
    from .. import proof_verify
    report = proof_verify.verify_export(file)
    print_json(report.as_dict())
    if not report.ok:
        sys.exit(1)
