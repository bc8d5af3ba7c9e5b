"""The ``consent-widget`` command: a Flask CLI group with the project's own commands.

Every command that creates something prints one JSON object on stdout; errors go to stderr with
a non-zero exit status.
"""
from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, NoAppException, with_appcontext

from . import campaigns, chain, create_app, db, ledger, migrate
from .config import ConfigurationError


def _print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _campaign_or_fail(slug: str):
    campaign = campaigns.by_slug(db.session(), slug)
    if campaign is None:
        raise click.ClickException(f"no campaign {slug!r}")
    return campaign


def _load_app():
    """Build the app for a command; a configuration that cannot run becomes a one-line error.

    Flask's group loads the app even to list commands for ``--help``; a plain exception there is
    printed as a traceback in the middle of the help, while ``NoAppException`` is shown as one
    line (and, for a command, as a usage error with a non-zero status).
    """
    try:
        return create_app()
    except ConfigurationError as exc:
        raise NoAppException(f"cannot run commands: {exc}") from None


@click.group(cls=FlaskGroup, create_app=_load_app)
def main():
    """consent_widget: explicit, provable, withdrawable consent for campaigns."""


# --- database -------------------------------------------------------------------------------
@main.group("db")
def db_group():
    """Database schema migrations (Alembic)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision):
    """Migrate the database to REVISION (default: the newest)."""
    migrate.upgrade(db.engine(), revision)
    click.echo(f"database at {migrate.current(db.engine())}", err=True)


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision):
    """Take the database back to REVISION."""
    migrate.downgrade(db.engine(), revision)


@db_group.command("current")
@with_appcontext
def db_current():
    """Print the database's revision and the code's newest."""
    _print_json({"current": migrate.current(db.engine()), "head": migrate.head()})


# --- campaigns ------------------------------------------------------------------------------
@main.group("campaign")
def campaign_group():
    """Campaigns: the candidates' sites that ask for consent."""


@campaign_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The campaign's public name.")
@click.option("--controller", required=True, help="Who controls the data (the candidate or party).")
@click.option("--contact-email", required=True, help="Where supporters can write about their data.")
@click.option("--policy-url", required=True, help="The privacy policy's URL.")
@click.option("--origin", "origins", multiple=True, help="A site allowed to embed the widget.")
@click.option("--locale", default="fr", type=click.Choice(["fr", "en"]), show_default=True)
@click.option("--network", "networks", multiple=True,
              help="A social network to ask about (default: facebook, linkedin, twitter, meetup).")
@click.option("--address", default="", help="The controller's postal address, for receipts.")
@click.option("--validity-days", default=None, type=int,
              help="Days a consent lasts before it must be renewed "
                   "(default: the CONSENT_VALIDITY_DAYS setting, 730).")
@click.option("--accent", default="", help="The widget's accent colour, #rrggbb (readable on "
              "its background).")
@click.option("--font", default="system", show_default=True,
              type=click.Choice(["system", "humanist", "geometric", "serif"]),
              help="The widget's font stack (fonts of the reader's device only).")
@click.option("--radius", default=4, show_default=True, type=int,
              help="Corner radius of fields and buttons, 0-16 px.")
@click.option("--scheme", default="auto", show_default=True,
              type=click.Choice(["auto", "light", "dark"]),
              help="Light, dark, or the reader's preference.")
@with_appcontext
def campaign_create(slug, name, controller, contact_email, policy_url, origins, locale, networks,
                    address, validity_days, accent, font, radius, scheme):
    """Create the campaign SLUG and print its widget URL and embed snippet."""
    from . import embed, theme
    with db.transaction() as session:
        try:
            look = theme.validate(accent, font, radius, scheme)
            campaign = campaigns.create_campaign(
                session, slug, name=name, controller=controller, contact_email=contact_email,
                policy_url=policy_url, origins=origins, locale=locale, networks=networks,
                controller_address=address,
                validity_days=validity_days or current_app.config["CONSENT_VALIDITY_DAYS"])
        except (campaigns.InvalidCampaign, theme.InvalidTheme) as exc:
            raise click.ClickException(str(exc)) from None
        for column, value in look.items():
            setattr(campaign, column, value)
    _print_json(embed.describe(campaign, current_app.config["BASE_URL"]))


@campaign_group.command("list")
@with_appcontext
def campaign_list():
    """List every campaign and its settings."""
    _print_json([campaigns.describe(c) for c in campaigns.all_campaigns(db.session())])


@campaign_group.command("update")
@click.argument("slug")
@click.option("--name", default=None, help="The campaign's public name.")
@click.option("--controller", default=None, help="Who controls the data.")
@click.option("--contact-email", default=None, help="Where supporters can write about their data.")
@click.option("--policy-url", default=None, help="The privacy policy's URL.")
@click.option("--address", default=None, help="The controller's postal address, for receipts.")
@click.option("--origin", "origins", multiple=True,
              help="A site allowed to embed the widget (repeatable; replaces the list).")
@click.option("--network", "networks", multiple=True,
              help="A social network to ask about (repeatable; replaces the list).")
@click.option("--locale", default=None, type=click.Choice(["fr", "en"]))
@click.option("--validity-days", default=None, type=int,
              help="Days a consent lasts before it must be renewed.")
@click.option("--accent", default=None, help="The widget's accent colour, #rrggbb; '' for the "
              "default.")
@click.option("--font", default=None,
              type=click.Choice(["system", "humanist", "geometric", "serif"]))
@click.option("--radius", default=None, type=int, help="Corner radius, 0-16 px.")
@click.option("--scheme", default=None, type=click.Choice(["auto", "light", "dark"]))
@with_appcontext
def campaign_update(slug, name, controller, contact_email, policy_url, address, origins,
                    networks, locale, validity_days, accent, font, radius, scheme):
    """Change the options given of campaign SLUG (the others keep their values); print it.

    Every value is checked as by create; the look's four values are checked together, so a
    new scheme must still suit the accent kept. Nothing changes when one is refused.
    """
    from . import audit, embed, theme
    given = {"name": name, "controller": controller, "contact_email": contact_email,
             "policy_url": policy_url, "controller_address": address,
             "origins": list(origins) or None, "networks": list(networks) or None,
             "locale": locale, "validity_days": validity_days}
    changes = {field: value for field, value in given.items() if value is not None}
    look = {"accent": accent, "font": font, "radius": radius, "scheme": scheme}
    with db.transaction() as session:
        campaign = _campaign_or_fail(slug)
        before = campaigns.describe(campaign)
        try:
            if changes:
                campaigns.update_campaign(session, campaign, **changes)
            if any(value is not None for value in look.values()):
                theme.change(campaign, **look)
        except (campaigns.InvalidCampaign, theme.InvalidTheme) as exc:
            raise click.ClickException(str(exc)) from None
        after = campaigns.describe(campaign)
        changed = sorted(key for key in after if after[key] != before[key])
        if changed:
            audit.record(session, "campaign.update", campaign=campaign, target=slug,
                         detail={"changed": changed, "via": "command line"})
    _print_json({**embed.describe(campaign, current_app.config["BASE_URL"]), **after})


@campaign_group.command("snippet")
@click.argument("slug")
@with_appcontext
def campaign_snippet(slug):
    """Print what to paste into a site to embed SLUG's widget: script, iframe, oEmbed URL."""
    from . import embed
    info = embed.describe(_campaign_or_fail(slug), current_app.config["BASE_URL"])
    _print_json({key: info[key] for key in (
        "slug", "widget_url", "embed_snippet", "fallback_snippet", "placeholder_snippet",
        "iframe_snippet", "oembed_url", "versioned_loader_url", "origins")})


# --- platform clients ------------------------------------------------------------------------
@main.group("client")
def client_group():
    """API clients of the platforms (campaign CRMs)."""


@client_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="Who the client is, for the campaign's records.")
@with_appcontext
def client_create(slug, name):
    """Create an OAuth client for campaign SLUG; its secret is printed once, stored hashed."""
    from . import oauth
    with db.transaction() as session:
        campaign = _campaign_or_fail(slug)
        client, secret = oauth.create_client(session, campaign, name=name)
    _print_json({"client_id": client.client_id, "client_secret": secret,
                 "scopes": client.scopes.split(), "campaign": slug,
                 "token_url": current_app.config["BASE_URL"] + "/oauth/token"})


@client_group.command("list")
@click.argument("slug")
@with_appcontext
def client_list(slug):
    """List campaign SLUG's API clients, revoked ones included, without their secrets."""
    from . import oauth
    campaign = _campaign_or_fail(slug)
    _print_json({"campaign": slug, "clients": [
        oauth.describe_client(c) for c in oauth.list_clients(db.session(), campaign)]})


def _client_or_fail(client_id: str):
    from . import oauth
    client = oauth.find_client(db.session(), client_id)
    if client is None:
        raise click.ClickException(f"no API client {client_id!r}")
    return client


@client_group.command("revoke")
@click.argument("client_id")
@with_appcontext
def client_revoke(client_id):
    """Revoke an API client and its tokens: its next API request is refused (401)."""
    from . import audit, oauth
    with db.transaction() as session:
        client = _client_or_fail(client_id)
        oauth.revoke_client(session, client)
        audit.record(session, "client.revoke", campaign=client.campaign, target=client_id,
                     detail={"via": "command line"})
    _print_json({"campaign": client.campaign.slug, **oauth.describe_client(client)})


@client_group.command("rotate")
@click.argument("client_id")
@with_appcontext
def client_rotate(client_id):
    """Give an API client a new secret, printed once; the old secret and the tokens obtained
    with it stop working at once."""
    from . import audit, oauth
    with db.transaction() as session:
        client = _client_or_fail(client_id)
        if client.revoked_at is not None:
            raise click.ClickException(f"the client {client_id!r} is revoked; create another")
        secret = oauth.rotate_secret(session, client)
        audit.record(session, "client.rotate", campaign=client.campaign, target=client_id,
                     detail={"via": "command line"})
    _print_json({"campaign": client.campaign.slug, **oauth.describe_client(client),
                 "client_secret": secret})


# --- the console's accounts ----------------------------------------------------------------
@main.group("admin")
def admin_group():
    """Accounts of the campaign console."""


@admin_group.command("create")
@click.argument("email")
@click.option("--operator", is_flag=True, help="The service's operator: creates campaigns and "
              "their first owners.")
@click.option("--campaign", "slug", default=None, help="The campaign the person joins.")
@click.option("--role", default="owner", show_default=True,
              type=click.Choice(["owner", "editor", "viewer"]), help="Their role in it.")
@with_appcontext
def admin_create(email, operator, slug, role):
    """Create the console account EMAIL (or give it a role) and print a one-time link to
    choose its password."""
    from . import accounts, audit
    if operator == bool(slug):
        raise click.UsageError("give either --operator or --campaign SLUG")
    with db.transaction() as session:
        campaign = _campaign_or_fail(slug) if slug else None
        user = accounts.user_by_email(session, email)
        try:
            if user is None:
                user = accounts.create_user(session, email, operator=operator)
            elif operator:
                user.is_operator = True
            if campaign is not None:
                accounts.grant(session, user, campaign, role)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
        audit.record(session, "account.create", campaign=campaign, target=user.email,
                     detail={"operator": operator, "role": role if campaign else None,
                             "via": "command line"})
        url = None
        if not user.password_hash:
            with current_app.test_request_context():
                from .admin import auth
                url = auth.password_url(user)
    _print_json({"email": user.email, "operator": user.is_operator,
                 "campaign": slug, "role": role if slug else None, "set_password_url": url,
                 "login_url": current_app.config["BASE_URL"].rstrip("/") + "/admin/login"})


# --- keys ----------------------------------------------------------------------------------
@main.group("keys")
def keys_group():
    """The Ed25519 keys that sign receipts and decisions."""


@keys_group.command("rotate")
@with_appcontext
def keys_rotate():
    """Make a new signing key current; old public keys stay published."""
    from . import keys
    with db.transaction() as session:
        key = keys.rotate_key(session)
    _print_json({"kid": key.kid, "alg": "EdDSA", "crv": "Ed25519",
                 "jwks_url": current_app.config["BASE_URL"] + "/.well-known/jwks.json"})


# --- ledger --------------------------------------------------------------------------------
@main.group("ledger")
def ledger_group():
    """The tamper-evident consent ledger."""


@ledger_group.command("verify")
@click.argument("slug", required=False)
@with_appcontext
def ledger_verify(slug):
    """Recompute the hash chain of SLUG (default: every campaign); exit 1 if it is broken."""
    from sqlalchemy import select
    from .models import Campaign
    session = db.session()
    chosen = [_campaign_or_fail(slug)] if slug else session.scalars(
        select(Campaign).order_by(Campaign.id)).all()
    total = 0
    heads = {}
    from . import proof_jobs
    for campaign in chosen:
        report = chain.verify_chain(session, campaign)
        # Kept for the console's compliance summary ("the last verification").
        proof_jobs.record_check(session, campaign, report)
        session.commit()
        if not report.ok:
            _print_json({"ok": False, "campaign": campaign.slug, "events": report.events,
                         "broken_event": report.broken_event, "reason": report.reason})
            sys.exit(1)
        total += report.events
        heads[campaign.slug] = report.head
    result = {"ok": True, "events": total}
    if slug:
        result["head"] = heads[slug]
    else:
        result["heads"] = heads
    _print_json(result)


@ledger_group.command("export")
@click.argument("slug")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="The archive to write (default: SLUG-proof-<UTC time>.zip here).")
@with_appcontext
def ledger_export(slug, output):
    """Write SLUG's proof export (ledger, notices, receipts, keys) for auditors."""
    import os
    from datetime import datetime, timezone
    from . import proof_export
    path = output or f"{slug}-proof-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.zip"
    partial = path + ".part"
    # One read transaction from the lookup on: on SQLite the export holds no write lock, so a
    # live service keeps taking signups while it runs.
    with db.reading() as session:
        campaign = _campaign_or_fail(slug)
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
    _print_json({"file": path, **result})


@ledger_group.command("verify-export", with_appcontext=False)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def ledger_verify_export(file):
    """Verify a proof export with nothing but the file (no database, no settings); exit 1
    naming the first bad file and line."""
    from . import proof_verify
    report = proof_verify.verify_export(file)
    _print_json(report.as_dict())
    if not report.ok:
        sys.exit(1)


# --- subjects and lifecycle ----------------------------------------------------------------
@main.group("subject")
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
    from . import lifecycle
    from .emails import InvalidEmail, lookup_key
    from .models import Campaign
    with db.transaction() as session:
        chosen = [_campaign_or_fail(slug)] if slug else session.scalars(
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
    _print_json({"erased": erased})


@main.group("jobs")
def jobs_group():
    """The scheduled jobs the worker runs: expiry and the purge of unconfirmed signups."""


@jobs_group.command("run")
@with_appcontext
def jobs_run():
    """Run the scheduled jobs once now and print what they did."""
    from . import lifecycle
    report = lifecycle.run_jobs(current_app._get_current_object())
    _print_json({"expired": report.expired, "purged": report.purged})


# --- webhooks ------------------------------------------------------------------------------
@main.group("webhook")
def webhook_group():
    """Endpoints that receive a campaign's events, signed per Standard Webhooks."""


def _endpoint_or_fail(campaign, endpoint_id: str):
    from . import webhooks
    endpoint = webhooks.endpoint_by_id(db.session(), campaign, endpoint_id)
    if endpoint is None:
        raise click.ClickException(f"no endpoint {endpoint_id!r} in campaign {campaign.slug!r}")
    return endpoint


@webhook_group.command("add")
@click.argument("slug")
@click.argument("url")
@click.option("--event", "event_types", multiple=True,
              help="An event type to deliver (repeatable; default: every type).")
@with_appcontext
def webhook_add(slug, url, event_types):
    """Send campaign SLUG's events to URL; prints the endpoint and its secret (shown once)."""
    from . import webhooks
    with db.transaction() as session:
        campaign = _campaign_or_fail(slug)
        try:
            endpoint = webhooks.add_endpoint(session, campaign, url, event_types)
        except webhooks.InvalidEndpoint as exc:
            raise click.ClickException(str(exc)) from None
    _print_json({"campaign": slug, **webhooks.describe(endpoint, with_secret=True)})


@webhook_group.command("list")
@click.argument("slug")
@with_appcontext
def webhook_list(slug):
    """List campaign SLUG's endpoints (without their secrets)."""
    from . import webhooks
    campaign = _campaign_or_fail(slug)
    _print_json({"campaign": slug, "endpoints": [
        webhooks.describe(e) for e in webhooks.endpoints(db.session(), campaign)]})


@webhook_group.command("remove")
@click.argument("slug")
@click.argument("endpoint_id")
@with_appcontext
def webhook_remove(slug, endpoint_id):
    """Remove an endpoint; its undelivered events are dropped."""
    from . import webhooks
    with db.transaction() as session:
        endpoint = _endpoint_or_fail(_campaign_or_fail(slug), endpoint_id)
        dropped = webhooks.remove_endpoint(session, endpoint)
    _print_json({"removed": endpoint_id, "dropped_events": dropped})


@webhook_group.command("test")
@click.argument("slug")
@click.argument("endpoint_id")
@with_appcontext
def webhook_test(slug, endpoint_id):
    """Send a signed webhook.test event now and print the endpoint's answer; exit 1 if not 2xx."""
    from . import webhooks
    campaign = _campaign_or_fail(slug)
    result = webhooks.send_test(campaign, _endpoint_or_fail(campaign, endpoint_id))
    _print_json(result)
    if not result["ok"]:
        sys.exit(1)


@webhook_group.command("redeliver")
@click.argument("slug")
@click.option("--event", "event_id", help="The id (webhook-id) of one event to send again.")
@click.option("--since", type=click.DateTime(), help="Send again every event queued from then "
                                                     "(UTC)...")
@click.option("--until", type=click.DateTime(), help="...until then (UTC; default: now).")
@with_appcontext
def webhook_redeliver(slug, event_id, since, until):
    """Queue events again, with their original webhook-id, to their still-active endpoints."""
    from datetime import timezone
    from . import webhooks
    if (event_id is None) == (since is None):
        raise click.ClickException("give either --event ID or --since TIME")
    with db.transaction() as session:
        count = webhooks.redeliver(
            session, _campaign_or_fail(slug), event_id=event_id,
            since=since.replace(tzinfo=timezone.utc) if since else None,
            until=until.replace(tzinfo=timezone.utc) if until else None)
    _print_json({"queued": count})


# --- worker --------------------------------------------------------------------------------
@main.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@with_appcontext
def worker(once, interval):
    """Run the outbox worker (emails, webhooks) and the scheduled jobs until stopped."""
    from . import outbox
    if once:
        _print_json(outbox.deliver_due(current_app._get_current_object()))
        return
    from . import lifecycle
    outbox.run_worker(current_app._get_current_object(), interval=interval,
                      jobs=lifecycle.run_jobs)


# --- demo ----------------------------------------------------------------------------------
@main.group("demo")
def demo_group():
    """A demo campaign and host page for trying the widget locally."""


@demo_group.command("setup")
@click.option("--host-port", default=5001, show_default=True,
              help="Port of the demo host page, whose origin may frame the widget.")
@with_appcontext
def demo_setup(host_port):
    """Create the demo campaign, a platform client and a signing key (once); print them."""
    from . import demo, webhooks
    try:
        _print_json(demo.setup(current_app._get_current_object(), host_port=host_port))
    except webhooks.InvalidEndpoint as exc:
        raise click.ClickException(f"the demo CRM's webhook: {exc} (set "
                                   "CONSENT_WEBHOOK_ALLOW_PRIVATE=1, as make run does)") from None


@demo_group.command("serve")
@click.option("--port", default=5000, show_default=True)
@click.option("--host-port", default=5001, show_default=True,
              help="Port of the demo host page, another origin that embeds the widget.")
@with_appcontext
def demo_serve(port, host_port):
    """Serve the app and a demo host page on another origin; print the URLs to open."""
    from . import demo
    demo.serve(current_app._get_current_object(), port=port, host_port=host_port)


if __name__ == "__main__":  # python -m consent_widget.cli, as the installed command
    main()
