"""Platforms in the console: API clients created (secret once), revoked (the next check is
refused), rotated; webhook endpoints added (private addresses refused), tested, turned off and
on, removed, their deliveries, and redelivery."""
from __future__ import annotations

import json
import re

from sqlalchemy import select

from consent_widget import db, outbox
from consent_widget.models import (AuditEntry, Membership, OAuthClient, OutboxMessage,
                                   WebhookEndpoint)

from console import console, post
from helpers import give
from test_api import basic, check
from webhook_receiver import Receiver

SECRET = re.compile(r'<code id="(?:client|webhook)-secret">([^<]+)</code>')


def _create_client(owner, name="CRM"):
    page = post(owner, "/admin/c/demo/platforms/clients", {"name": name})
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    client_id = re.search(r"<code>(cw_[^<]+)</code>", text).group(1)
    return client_id, SECRET.search(text).group(1)


def _token(client, client_id, secret):
    return client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers=basic(client_id, secret))


def test_a_client_made_in_the_console_works_and_stops_at_once_when_revoked(app, client,
                                                                          campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    client_id, secret = _create_client(owner)
    # The secret is shown once: the page after shows the client, not its secret.
    assert secret not in owner.get("/admin/c/demo/platforms").get_data(as_text=True)
    token = _token(client, client_id, secret).json["access_token"]
    assert check(client, token, email="ana@marie2027.test", purpose="newsletter").status_code \
        == 200
    assert post(owner, f"/admin/c/demo/platforms/clients/{client_id}/revoke").status_code == 302
    assert check(client, token, email="ana@marie2027.test", purpose="newsletter").status_code \
        == 401
    assert _token(client, client_id, secret).status_code == 401
    with app.app_context():
        assert db.session().scalars(select(AuditEntry).where(
            AuditEntry.action == "client.revoke")).one().target == client_id


def test_a_new_secret_ends_the_old_one_and_its_tokens(app, client, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    client_id, old = _create_client(owner)
    old_token = _token(client, client_id, old).json["access_token"]
    page = post(owner, f"/admin/c/demo/platforms/clients/{client_id}/rotate")
    new = SECRET.search(page.get_data(as_text=True)).group(1)
    assert new != old
    assert _token(client, client_id, old).status_code == 401
    assert check(client, old_token, email="a@marie2027.test", purpose="newsletter").status_code \
        == 401
    fresh = _token(client, client_id, new).json["access_token"]
    assert check(client, fresh, email="a@marie2027.test", purpose="newsletter").status_code \
        == 200


def test_another_campaigns_client_or_endpoint_cannot_be_touched(app, runner, campaign):
    from consent_widget.campaigns import create_campaign
    from conftest import run_json
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")
    theirs = run_json(runner, "client", "create", "other")["client_id"]
    owner = console(app, "owner@marie2027.test", slug="demo")
    for action in ("revoke", "rotate"):
        assert post(owner, f"/admin/c/demo/platforms/clients/{theirs}/{action}").status_code \
            == 404
    with app.app_context():
        assert db.session().scalars(select(OAuthClient).where(
            OAuthClient.client_id == theirs)).one().revoked_at is None


def test_a_webhook_to_a_private_address_is_refused_in_the_console(app, campaign):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    owner = console(app, "owner@marie2027.test", slug="demo")
    for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "javascript:alert(1)", "x" * 3000):
        response = post(owner, "/admin/c/demo/platforms/webhooks", {"url": url})
        assert response.status_code == 400, url
    with app.app_context():
        assert db.session().scalars(select(WebhookEndpoint)).all() == []


def test_a_webhook_is_added_tested_and_its_deliveries_shown(app, campaign):
    receiver = Receiver()
    receiver.start()
    try:
        owner = console(app, "owner@marie2027.test", slug="demo")
        page = post(owner, "/admin/c/demo/platforms/webhooks",
                    {"url": receiver.url, "events": ["consent.withdrawn", "consent.given"]})
        assert page.status_code == 200
        receiver.secret = SECRET.search(page.get_data(as_text=True)).group(1)
        with app.app_context():
            endpoint = db.session().scalars(select(WebhookEndpoint)).one()
        assert post(owner, f"/admin/c/demo/platforms/webhooks/{endpoint.public_id}/test") \
            .status_code == 302
        assert receiver.requests
        give(app, "demo", "ana@marie2027.test", newsletter=True)
        with app.app_context():
            outbox.deliver_due(app)
        detail = owner.get(f"/admin/c/demo/platforms/webhooks/{endpoint.public_id}")
        text = detail.get_data(as_text=True)
        assert "sent" in text and ">200<" in text and "evt_" in text
        assert post(owner, f"/admin/c/demo/platforms/webhooks/{endpoint.public_id}/disable") \
            .status_code == 302
        with app.app_context():
            assert db.session().get(WebhookEndpoint, endpoint.id).status == "disabled"
        post(owner, f"/admin/c/demo/platforms/webhooks/{endpoint.public_id}/enable")
        redone = post(owner, "/admin/c/demo/platforms/redeliver",
                      {"since": "2000-01-01T00:00"})
        assert redone.status_code == 302
        assert post(owner, "/admin/c/demo/platforms/redeliver", {}).status_code == 400
        assert post(owner, "/admin/c/demo/platforms/redeliver",
                    {"since": "not a date"}).status_code == 400
        post(owner, f"/admin/c/demo/platforms/webhooks/{endpoint.public_id}/remove")
        with app.app_context():
            assert db.session().scalars(select(WebhookEndpoint)).all() == []
    finally:
        receiver.stop()


def test_viewers_see_the_platforms_but_change_nothing(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    client_id, _secret = _create_client(owner, '<script>alert(1)</script>')
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get("/admin/c/demo/platforms").get_data(as_text=True)
    assert client_id in page and "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert post(viewer, f"/admin/c/demo/platforms/clients/{client_id}/revoke").status_code == 403
    assert post(viewer, "/admin/c/demo/platforms/clients", {"name": "x"}).status_code == 403


# --- ids of another campaign, in URLs and in forms -----------------------------------------
def _other_campaign_with_an_event(app, tmp_path):
    """Campaign ``other`` with its owner, an endpoint, an event and a finished proof job."""
    from consent_widget import proof_jobs, webhooks
    from consent_widget.campaigns import create_campaign
    from consent_widget.models import Campaign
    from console import make_user
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")
    make_user(app, "owner@other.test", slug="other")
    with app.app_context():
        with db.transaction() as session:
            other = session.scalars(select(Campaign).where(Campaign.slug == "other")).one()
            endpoint = webhooks.add_endpoint(session, other, "http://127.0.0.1:9/theirs", [])
            job = proof_jobs.create(session, other, None)
            # Finished, with its archive on disk: only the campaign check stands in the way.
            archive = tmp_path / "theirs.zip"
            archive.write_bytes(b"PK\x05\x06" + bytes(18))
            job.status, job.path = proof_jobs.DONE, str(archive)
            ids = {"endpoint": endpoint.public_id, "job": job.public_id}
    give(app, "other", "ana@other.test", newsletter=True)
    with app.app_context():
        rows = db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook",
            OutboxMessage.recipient == ids["endpoint"])).all()
        ids["event"] = json.loads(rows[0].payload)["id"]
        ids["member"] = db.session().scalars(select(Membership).join(Campaign).where(
            Campaign.slug == "other")).one().id
    return ids


def _outbox_rows(app) -> int:
    with app.app_context():
        return len(db.session().scalars(select(OutboxMessage)).all())


def test_an_owner_cannot_see_or_change_another_campaigns_endpoint_member_job_or_event(
        app, campaign, tmp_path):
    theirs = _other_campaign_with_an_event(app, tmp_path)
    owner = console(app, "owner@marie2027.test", slug="demo")
    owner.get("/admin/account?lang=en")
    endpoint = theirs["endpoint"]
    # Their endpoint, by id, under our campaign's URLs and under theirs.
    for slug in ("demo", "other"):
        assert owner.get(f"/admin/c/{slug}/platforms/webhooks/{endpoint}").status_code == 404
        for action in ("test", "disable", "enable", "remove"):
            assert post(owner, f"/admin/c/{slug}/platforms/webhooks/{endpoint}/{action}") \
                .status_code == 404, (slug, action)
    assert endpoint not in owner.get("/admin/c/demo/platforms").get_data(as_text=True)
    # Their team member, by id.
    member = theirs["member"]
    assert post(owner, f"/admin/c/demo/team/{member}/role", {"role": "viewer"}).status_code \
        == 404
    assert post(owner, f"/admin/c/demo/team/{member}/remove").status_code == 404
    # Their proof job, by id.
    assert owner.get(f"/admin/c/demo/proof/exports/{theirs['job']}.zip").status_code == 404
    # Their event's id in our redeliver form: refused, and nothing is queued, for them or us.
    before = _outbox_rows(app)
    answer = post(owner, "/admin/c/demo/platforms/redeliver", {"event_id": theirs["event"]})
    assert answer.status_code == 404
    assert "This campaign has no event with this id." in answer.get_data(as_text=True)
    assert _outbox_rows(app) == before
    with app.app_context():
        session = db.session()
        assert session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == endpoint)).one().status == "active"
        kept = session.get(Membership, member)
        assert kept is not None and kept.role == "owner"
        assert session.scalars(select(AuditEntry).where(
            AuditEntry.action.in_(("member.role", "member.remove", "webhook.disable",
                                   "webhook.remove", "proof.download")))).all() == []
    # The same job's download, by its own campaign's owner, works.
    theirs_owner = console(app, "owner@other.test", slug="other")
    assert theirs_owner.get(f"/admin/c/other/proof/exports/{theirs['job']}.zip") \
        .status_code == 200


def test_redelivering_one_event_sends_it_again_with_the_same_id(app, campaign):
    receiver = Receiver()
    receiver.start()
    try:
        owner = console(app, "owner@marie2027.test", slug="demo")
        owner.get("/admin/account?lang=en")
        page = post(owner, "/admin/c/demo/platforms/webhooks", {"url": receiver.url})
        receiver.secret = SECRET.search(page.get_data(as_text=True)).group(1)
        give(app, "demo", "ana@marie2027.test", newsletter=True)
        give(app, "demo", "bea@marie2027.test", newsletter=True)
        with app.app_context():
            outbox.deliver_due(app)
        first = [webhook_id for webhook_id, _headers in receiver.requests]
        assert len(first) >= 2 and len(set(first)) == len(first)
        chosen = first[0]
        answer = post(owner, "/admin/c/demo/platforms/redeliver", {"event_id": chosen},
                      follow_redirects=True)
        assert "1 deliveries queued again" in answer.get_data(as_text=True)
        with app.app_context():
            outbox.deliver_due(app)
        # Only the chosen event went again, with its webhook-id (the receiver's dedup key).
        again = [webhook_id for webhook_id, _headers in receiver.requests][len(first):]
        assert again == [chosen]
        with app.app_context():
            entry = db.session().scalars(select(AuditEntry).where(
                AuditEntry.action == "webhook.redeliver")).one()
            assert entry.detail["event_id"] == chosen and entry.detail["queued"] == 1
        # An id no event of the campaign has is refused, saying so.
        unknown = post(owner, "/admin/c/demo/platforms/redeliver", {"event_id": "evt_nope"})
        assert unknown.status_code == 404
        assert "This campaign has no event with this id." in unknown.get_data(as_text=True)
    finally:
        receiver.stop()
