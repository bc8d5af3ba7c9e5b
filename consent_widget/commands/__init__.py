"""The groups of the ``consent-widget`` command, one module per part of the service.

Each module defines its click groups; ``consent_widget.cli`` adds them to the main command. The
helpers here are the conventions every command shares: created things are printed as one JSON
object on stdout, and a name that matches nothing is a clear error with a non-zero exit status.
"""
from __future__ import annotations

import json

import click

from .. import db
from ..campaigns import by_slug


def print_json(obj) -> None:
    """Print ``obj`` as indented JSON, the output of every command that creates something."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def campaign_or_fail(slug: str):
    """The campaign called ``slug``, or a click error that names it."""
    campaign = by_slug(db.session(), slug)
    if campaign is None:
        raise click.ClickException(f"no campaign {slug!r}")
    return campaign
