"""Commands for the console's accounts."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .. import db
from . import campaign_or_fail, print_json


# --- the console's accounts ----------------------------------------------------------------
@click.group("admin", cls=AppGroup)
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
    from .. import accounts, audit
    if operator == bool(slug):
        raise click.UsageError("give either --operator or --campaign SLUG")
    with db.transaction() as session:
        campaign = campaign_or_fail(slug) if slug else None
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
                from ..admin import auth
                url = auth.password_url(user)
    print_json({"email": user.email, "operator": user.is_operator,
                 "campaign": slug, "role": role if slug else None, "set_password_url": url,
                 "login_url": current_app.config["BASE_URL"].rstrip("/") + "/admin/login"})
