"""The dashboard's charts, drawn on the server as SVG with pygal.

Each chart is its own SVG document shown by an ``<img>``: an image runs no script and loads
nothing, and the page beside it holds the same numbers in a table for those who cannot see it.
"""
from __future__ import annotations

import re

import pygal
from flask import Response, g, request
from flask_babel import gettext
from pygal.style import Style

from .. import db, stats
from ..models import utcnow
from . import CAMPAIGN, route

#: High-contrast series colours (each reads at 4.5:1 or more on white).
_STYLE = Style(background="#ffffff", plot_background="#ffffff", foreground="#1a1a1a",
               foreground_strong="#1a1a1a", foreground_subtle="#4a4a4a",
               colors=("#0b57d0", "#1e6b34", "#b3261e"), font_family="system-ui, sans-serif")
#: pygal writes its configuration for its optional JavaScript into the SVG; nothing uses it.
_SCRIPT = re.compile(rb"<script\b.*?</script>", re.DOTALL)
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def period() -> int:
    """The dashboard's period in days from ``?days=``: one of stats.PERIODS, else 30."""
    value = request.args.get("days", "")
    return int(value) if value.isdigit() and int(value) in stats.PERIODS else 30


def activity_svg(activity: stats.Activity) -> bytes:
    """Signups, confirmations and withdrawals per day, as one line chart."""
    chart = pygal.Line(style=_STYLE, js=[], width=900, height=360, show_dots=False,
                       x_label_rotation=30, show_minor_x_labels=False, truncate_label=-1,
                       title=gettext("Per day"), disable_xml_declaration=False,
                       explicit_size=True)
    labels = [day.isoformat() for day in activity.days]
    chart.x_labels = labels
    chart.x_labels_major = labels[::max(1, len(labels) // 8)]
    chart.add(gettext("Signups"), activity.signups)
    chart.add(gettext("Confirmations"), activity.confirmations)
    chart.add(gettext("Withdrawals"), activity.withdrawals)
    return _SCRIPT.sub(b"", chart.render())


@route("/c/<slug>/charts/activity.svg", access=CAMPAIGN, read="viewer", methods=["GET"])
def activity_chart():
    """The activity chart of the dashboard's period."""
    activity = stats.activity(db.session(), g.campaign, utcnow(), period())
    response = Response(activity_svg(activity), mimetype="image/svg+xml")
    # Set here: the console's page policy (no inline style) does not suit an SVG document.
    response.headers["Content-Security-Policy"] = _CSP
    return response
