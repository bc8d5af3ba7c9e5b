"""consent_widget: explicit, provable, withdrawable consent for campaigns' newsletters and
social matching. ``create_app`` only wires the parts together; it does no I/O of its own."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

#: Templates and the embed folder live in the package, so that an installed wheel has them.
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: configuration, then each part's ``init_app``, then blueprints."""
    # Imported here so that ``consent_widget.client``, the platforms' SDK, needs no Flask.
    from .application import ConsentApp
    app = ConsentApp(__name__, instance_relative_config=True,
                     template_folder=os.path.join(_PACKAGE, "templates"),
                     static_folder=None)
    if test_config is not None:
        app.testing = bool(test_config.get("TESTING", True))
    from . import config
    config.load(app, test_config)

    from . import api, db, embed, errors, i18n, links, oauth, outbox, receipts, widget
    from . import admin, cookies, health, landing, limits, logs, metrics
    cookies.init_app(app)
    logs.init_app(app)  # first: every later hook and log line has the request id
    metrics.init_app(app)
    db.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    oauth.init_app(app)
    outbox.init_app(app)
    app.register_blueprint(widget.bp)
    app.register_blueprint(links.bp)
    app.register_blueprint(receipts.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(embed.bp)
    app.register_blueprint(landing.bp)
    admin.init_app(app)
    health.init_app(app)
    limits.init_app(app)  # last: it wraps the views registered above
    return app
