"""Commands that run the service: the worker and the local demo."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from . import print_json


# --- worker --------------------------------------------------------------------------------
@click.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@with_appcontext
def worker(once, interval):
    """Run the outbox worker (emails, webhooks) and the scheduled jobs until stopped."""
    from .. import outbox
    if once:
        print_json(outbox.deliver_due(current_app._get_current_object()))
        return
    from .. import lifecycle
    outbox.run_worker(current_app._get_current_object(), interval=interval,
                      jobs=lifecycle.run_jobs)


# --- demo ----------------------------------------------------------------------------------
@click.group("demo", cls=AppGroup)
def demo_group():
    """A demo campaign and host page for trying the widget locally."""


@demo_group.command("setup")
@click.option("--host-port", default=5001, show_default=True,
              help="Port of the demo host page, whose origin may frame the widget.")
@with_appcontext
def demo_setup(host_port):
    """Create the demo campaign, a platform client and a signing key (once); print them."""
    from .. import demo, webhooks
    try:
        print_json(demo.setup(current_app._get_current_object(), host_port=host_port))
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
    from .. import demo
    demo.serve(current_app._get_current_object(), port=port, host_port=host_port)
