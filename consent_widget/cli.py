"""The ``consent-widget`` command: a Flask CLI group with the project's own commands.

Every command that creates something prints one JSON object on stdout; errors go to stderr with
a non-zero exit status. The groups live in ``consent_widget.commands``, one module each.
"""
from __future__ import annotations

import click
from flask.cli import FlaskGroup, NoAppException, with_appcontext

from . import create_app, db, migrate
from .commands import accounts, campaigns, ledger, platforms, print_json, service, subjects
from .config import ConfigurationError


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
    print_json({"current": migrate.current(db.engine()), "head": migrate.head()})


for _group in (campaigns.campaign_group, platforms.client_group, platforms.webhook_group,
               accounts.admin_group, ledger.keys_group, ledger.ledger_group,
               subjects.subject_group, subjects.jobs_group, service.worker, service.demo_group):
    main.add_command(_group)


if __name__ == "__main__":  # python -m consent_widget.cli, as the installed command
    main()
