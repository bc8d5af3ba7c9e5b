"""Commands for a campaign's platforms: API clients and webhook endpoints."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .. import db
from . import campaign_or_fail, print_json


# --- platform clients ------------------------------------------------------------------------
@click.group("client", cls=AppGroup)
def client_group():
    """API clients of the platforms (campaign CRMs)."""


@client_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="Who the client is, for the campaign's records.")
@with_appcontext
def client_create(slug, name):
    """Create an OAuth client for campaign SLUG; its secret is printed once, stored hashed."""
    from .. import oauth
    with db.transaction() as session:
        campaign = campaign_or_fail(slug)
        client, secret = oauth.create_client(session, campaign, name=name)
    print_json({"client_id": client.client_id, "client_secret": secret,
                 "scopes": client.scopes.split(), "campaign": slug,
                 "token_url": current_app.config["BASE_URL"] + "/oauth/token"})


@client_group.command("list")
@click.argument("slug")
@with_appcontext
def client_list(slug):
    """List campaign SLUG's API clients, revoked ones included, without their secrets."""
    from .. import oauth
    campaign = campaign_or_fail(slug)
    print_json({"campaign": slug, "clients": [
        oauth.describe_client(c) for c in oauth.list_clients(db.session(), campaign)]})


def _client_or_fail(client_id: str):
    from .. import oauth
    client = oauth.find_client(db.session(), client_id)
    if client is None:
        raise click.ClickException(f"no API client {client_id!r}")
    return client


@client_group.command("revoke")
@click.argument("client_id")
@with_appcontext
def client_revoke(client_id):
    """Revoke an API client and its tokens: its next API request is refused (401)."""
    from .. import audit, oauth
    with db.transaction() as session:
        client = _client_or_fail(client_id)
        oauth.revoke_client(session, client)
        audit.record(session, "client.revoke", campaign=client.campaign, target=client_id,
                     detail={"via": "command line"})
    print_json({"campaign": client.campaign.slug, **oauth.describe_client(client)})


@client_group.command("rotate")
@click.argument("client_id")
@with_appcontext
def client_rotate(client_id):
    """Give an API client a new secret, printed once; the old secret and the tokens obtained
    with it stop working at once."""
    from .. import audit, oauth
    with db.transaction() as session:
        client = _client_or_fail(client_id)
        if client.revoked_at is not None:
            raise click.ClickException(f"the client {client_id!r} is revoked; create another")
        secret = oauth.rotate_secret(session, client)
        audit.record(session, "client.rotate", campaign=client.campaign, target=client_id,
                     detail={"via": "command line"})
    print_json({"campaign": client.campaign.slug, **oauth.describe_client(client),
                 "client_secret": secret})


# --- webhooks ------------------------------------------------------------------------------
@click.group("webhook", cls=AppGroup)
def webhook_group():
    """Endpoints that receive a campaign's events, signed per Standard Webhooks."""


def _endpoint_or_fail(campaign, endpoint_id: str):
    from .. import webhooks
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
    from .. import webhooks
    with db.transaction() as session:
        campaign = campaign_or_fail(slug)
        try:
            endpoint = webhooks.add_endpoint(session, campaign, url, event_types)
        except webhooks.InvalidEndpoint as exc:
            raise click.ClickException(str(exc)) from None
    print_json({"campaign": slug, **webhooks.describe(endpoint, with_secret=True)})


@webhook_group.command("list")
@click.argument("slug")
@with_appcontext
def webhook_list(slug):
    """List campaign SLUG's endpoints (without their secrets)."""
    from .. import webhooks
    campaign = campaign_or_fail(slug)
    print_json({"campaign": slug, "endpoints": [
        webhooks.describe(e) for e in webhooks.endpoints(db.session(), campaign)]})


@webhook_group.command("remove")
@click.argument("slug")
@click.argument("endpoint_id")
@with_appcontext
def webhook_remove(slug, endpoint_id):
    """Remove an endpoint; its undelivered events are dropped."""
    from .. import webhooks
    with db.transaction() as session:
        endpoint = _endpoint_or_fail(campaign_or_fail(slug), endpoint_id)
        dropped = webhooks.remove_endpoint(session, endpoint)
    print_json({"removed": endpoint_id, "dropped_events": dropped})


@webhook_group.command("test")
@click.argument("slug")
@click.argument("endpoint_id")
@with_appcontext
def webhook_test(slug, endpoint_id):
    """Send a signed webhook.test event now and print the endpoint's answer; exit 1 if not 2xx."""
    from .. import webhooks
    campaign = campaign_or_fail(slug)
    result = webhooks.send_test(campaign, _endpoint_or_fail(campaign, endpoint_id))
    print_json(result)
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
    from .. import webhooks
    if (event_id is None) == (since is None):
        raise click.ClickException("give either --event ID or --since TIME")
    with db.transaction() as session:
        count = webhooks.redeliver(
            session, campaign_or_fail(slug), event_id=event_id,
            since=since.replace(tzinfo=timezone.utc) if since else None,
            until=until.replace(tzinfo=timezone.utc) if until else None)
    print_json({"queued": count})
