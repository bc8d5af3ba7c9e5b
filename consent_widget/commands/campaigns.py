"""Commands for campaigns: create, list, update, and the embed snippet."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .. import campaigns, db
from . import campaign_or_fail, print_json


# --- campaigns ------------------------------------------------------------------------------
@click.group("campaign", cls=AppGroup)
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
    from .. import embed, theme
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
    print_json(embed.describe(campaign, current_app.config["BASE_URL"]))


@campaign_group.command("list")
@with_appcontext
def campaign_list():
    """List every campaign and its settings."""
    print_json([campaigns.describe(c) for c in campaigns.all_campaigns(db.session())])


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
    from .. import audit, embed, theme
    given = {"name": name, "controller": controller, "contact_email": contact_email,
             "policy_url": policy_url, "controller_address": address,
             "origins": list(origins) or None, "networks": list(networks) or None,
             "locale": locale, "validity_days": validity_days}
    changes = {field: value for field, value in given.items() if value is not None}
    look = {"accent": accent, "font": font, "radius": radius, "scheme": scheme}
    with db.transaction() as session:
        campaign = campaign_or_fail(slug)
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
    print_json({**embed.describe(campaign, current_app.config["BASE_URL"]), **after})


@campaign_group.command("snippet")
@click.argument("slug")
@with_appcontext
def campaign_snippet(slug):
    """Print what to paste into a site to embed SLUG's widget: script, iframe, oEmbed URL."""
    from .. import embed
    info = embed.describe(campaign_or_fail(slug), current_app.config["BASE_URL"])
    print_json({key: info[key] for key in (
        "slug", "widget_url", "embed_snippet", "fallback_snippet", "placeholder_snippet",
        "iframe_snippet", "oembed_url", "versioned_loader_url", "origins")})
