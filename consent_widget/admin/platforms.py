"""The campaign's platforms: API clients (created, revoked, secrets rotated) and webhook
endpoints (added, tested, turned off and on, removed), their deliveries, and redelivery.

Owners change them; viewers and editors see them. A secret is shown once, on the page that
answers its creation, and never stored in clear.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_babel import gettext

from .. import db, events, oauth, webhooks
from . import CAMPAIGN, log, render, route

_MAX_NAME = 200


def _page(status: int = 200, **shown):
    session, campaign = db.session(), g.campaign
    return render("platforms.html", clients=oauth.list_clients(session, campaign),
                  endpoints=webhooks.endpoints(session, campaign),
                  event_types=events.EVENT_TYPES,
                  token_url=current_app.config["BASE_URL"].rstrip("/") + "/oauth/token",
                  **shown), status


def _back():
    return redirect(url_for("admin.platforms", slug=g.campaign.slug))


@route("/c/<slug>/platforms", access=CAMPAIGN, read="viewer", methods=["GET"])
def platforms():
    """The campaign's API clients and webhook endpoints."""
    return _page()


# --- API clients ---------------------------------------------------------------------------
def _client(client_id: str):
    client = oauth.client_by_id(db.session(), g.campaign, client_id)
    if client is None:
        abort(404)
    return client


@route("/c/<slug>/platforms/clients", access=CAMPAIGN, write="owner", methods=["POST"])
def create_client():
    """A new API client; its secret is shown on the answer, once."""
    name = request.form.get("name", "").strip()
    if len(name) > _MAX_NAME:
        return _page(400, error=gettext("The name has at most %(num)d characters.",
                                        num=_MAX_NAME))
    client, secret = oauth.create_client(db.session(), g.campaign, name=name)
    log("client.create", target=client.client_id, detail={"name": name})
    db.session().commit()
    return _page(new_secret={"client_id": client.client_id, "secret": secret})


@route("/c/<slug>/platforms/clients/<client_id>/revoke", access=CAMPAIGN, write="owner",
       methods=["POST"])
def revoke_client(client_id):
    """Revoke a client: its tokens stop working at once."""
    client = _client(client_id)
    oauth.revoke_client(db.session(), client)
    log("client.revoke", target=client.client_id)
    db.session().commit()
    flash(gettext("The client %(id)s is revoked.", id=client.client_id), "success")
    return _back()


@route("/c/<slug>/platforms/clients/<client_id>/rotate", access=CAMPAIGN, write="owner",
       methods=["POST"])
def rotate_client(client_id):
    """A new secret for a client; the old one and its tokens stop working."""
    client = _client(client_id)
    if client.revoked_at is not None:
        return _page(400, error=gettext("A revoked client gets no new secret."))
    secret = oauth.rotate_secret(db.session(), client)
    log("client.rotate", target=client.client_id)
    db.session().commit()
    return _page(new_secret={"client_id": client.client_id, "secret": secret})


# --- webhook endpoints ---------------------------------------------------------------------
def _endpoint(endpoint_id: str):
    endpoint = webhooks.endpoint_by_id(db.session(), g.campaign, endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


@route("/c/<slug>/platforms/webhooks", access=CAMPAIGN, write="owner", methods=["POST"])
def add_webhook():
    """Register a URL for the chosen event types (none ticked: every type)."""
    url = request.form.get("url", "").strip()
    chosen = request.form.getlist("events")
    try:
        endpoint = webhooks.add_endpoint(db.session(), g.campaign, url, chosen)
    except webhooks.InvalidEndpoint as exc:
        db.session().rollback()
        return _page(400, error=str(exc), url=url)
    log("webhook.add", target=endpoint.public_id, detail={"url": url, "events": chosen})
    db.session().commit()
    return _page(new_webhook={"id": endpoint.public_id, "secret": endpoint.secret})


@route("/c/<slug>/platforms/webhooks/<endpoint_id>", access=CAMPAIGN, read="viewer",
       methods=["GET"])
def webhook(endpoint_id):
    """One endpoint and its deliveries: status, answer code, attempts, times."""
    endpoint = _endpoint(endpoint_id)
    rows = webhooks.deliveries(db.session(), g.campaign, endpoint)
    return render("webhook.html", endpoint=endpoint,
                  deliveries=[(row, _webhook_id(row.payload)) for row in rows])


@route("/c/<slug>/platforms/webhooks/<endpoint_id>/test", access=CAMPAIGN, write="owner",
       methods=["POST"])
def test_webhook(endpoint_id):
    """Send a signed ``webhook.test`` event now and say what the endpoint answered."""
    endpoint = _endpoint(endpoint_id)
    db.session().rollback()  # no transaction held across the request
    result = webhooks.send_test(g.campaign, endpoint)
    log("webhook.test", target=endpoint.public_id, detail=result)
    db.session().commit()
    if result["ok"]:
        flash(gettext("The endpoint answered %(status)s.", status=result["status"]), "success")
    else:
        error = result.get("error") or "HTTP {}".format(result.get("status"))
        flash(gettext("The test failed: %(error)s", error=error), "error")
    return _back()


@route("/c/<slug>/platforms/webhooks/<endpoint_id>/disable", access=CAMPAIGN, write="owner",
       methods=["POST"])
def disable_webhook(endpoint_id):
    """Stop delivering to an endpoint; what waits for it is set aside."""
    endpoint = _endpoint(endpoint_id)
    webhooks.set_active(db.session(), endpoint, False, "turned off in the console")
    log("webhook.disable", target=endpoint.public_id)
    db.session().commit()
    return _back()


@route("/c/<slug>/platforms/webhooks/<endpoint_id>/enable", access=CAMPAIGN, write="owner",
       methods=["POST"])
def enable_webhook(endpoint_id):
    """Deliver to an endpoint again (new events; redeliver the ones it missed)."""
    endpoint = _endpoint(endpoint_id)
    webhooks.set_active(db.session(), endpoint, True)
    log("webhook.enable", target=endpoint.public_id)
    db.session().commit()
    return _back()


@route("/c/<slug>/platforms/webhooks/<endpoint_id>/remove", access=CAMPAIGN, write="owner",
       methods=["POST"])
def remove_webhook(endpoint_id):
    """Remove an endpoint; what waits for it is set aside."""
    endpoint = _endpoint(endpoint_id)
    public_id = endpoint.public_id
    webhooks.remove_endpoint(db.session(), endpoint)
    log("webhook.remove", target=public_id)
    db.session().commit()
    flash(gettext("The endpoint is removed."), "success")
    return _back()


def _webhook_id(payload: str) -> str:
    """The ``webhook-id`` a delivery carries (the receiver's deduplication key)."""
    try:
        return str(json.loads(payload).get("id", ""))
    except (ValueError, AttributeError):
        return ""


def _moment(value: str) -> datetime | None:
    """A ``datetime-local`` form value, read as UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        abort(400, description=gettext("A date is not valid."))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@route("/c/<slug>/platforms/redeliver", access=CAMPAIGN, write="owner", methods=["POST"])
def redeliver():
    """Queue again one event (by its webhook-id) or every event of a time range."""
    event_id = request.form.get("event_id", "").strip() or None
    since, until = _moment(request.form.get("since", "")), _moment(request.form.get("until", ""))
    if event_id is None and since is None:
        return _page(400, error=gettext("Give an event id, or the start of a time range."))
    if event_id is not None and len(event_id) > 64:
        abort(400)
    if event_id is not None and not webhooks.has_event(db.session(), g.campaign, event_id):
        # Said plainly rather than "0 queued": a mistyped id, or another campaign's.
        return _page(404, error=gettext("This campaign has no event with this id."))
    count = webhooks.redeliver(db.session(), g.campaign, event_id=event_id, since=since,
                               until=until)
    log("webhook.redeliver", detail={"event_id": event_id, "since": str(since or ""),
                                     "until": str(until or ""), "queued": count})
    db.session().commit()
    flash(gettext("%(num)d deliveries queued again.", num=count), "success")
    return _back()
