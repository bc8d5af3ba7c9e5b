"""A campaign's dashboard: consents now, activity per day, and what waits to be delivered."""
from __future__ import annotations

from flask import g, url_for

from .. import db, notices, stats
from ..models import EVENT_TYPES, utcnow
from . import CAMPAIGN, render, route
from .charts import period


@route("/c/<slug>/", access=CAMPAIGN, read="viewer", methods=["GET"])
def dashboard():
    """Counts by purpose, network and status; the period's activity chart and its table;
    confirmation rate, GPC share; the outbox and failing webhook endpoints."""
    session, campaign, now = db.session(), g.campaign, utcnow()
    days = period()
    counts = stats.consent_counts(session, campaign, now)
    items = [(purpose, network, notices.item_label(campaign, purpose, network),
              counts.get((purpose, network), {})) for purpose, network in
             notices.offered_items(campaign)]
    return render("dashboard.html", items=items, statuses=EVENT_TYPES, days=days,
                  periods=stats.PERIODS, activity=stats.activity(session, campaign, now, days),
                  rates=stats.rates(session, campaign, now, days),
                  queues=stats.outbox_depth(session, campaign), now=now,
                  failing=stats.failing_endpoints(session, campaign),
                  chart_url=url_for("admin.activity_chart", slug=campaign.slug, days=days))
