"""Answering a supporter from the console: lookup, history, receipts, Art. 15 export, Art. 17
erasure behind a confirmation, the manage link sent again; and no way into another campaign."""
from __future__ import annotations

import json
import re

from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select

from consent_widget import db, outbox
from consent_widget.campaigns import create_campaign
from consent_widget.models import AuditEntry, OutboxMessage, Subject

from console import console, csrf_token, post
from helpers import give, sign_up, status


def _subject_id(app, email: str, slug: str = "demo") -> str:
    from consent_widget.models import Campaign
    with app.app_context():
        return db.session().scalars(select(Subject.public_id).join(
            Campaign, Campaign.id == Subject.campaign_id).where(
            Campaign.slug == slug, Subject.email == email)).one()


def _lookup(client, query: str):
    return client.post("/admin/c/demo/supporters",
                       data={"csrf_token": csrf_token(client, "/admin/c/demo/supporters"),
                             "query": query})


def test_a_supporter_is_found_by_address_or_id_and_the_address_stays_out_of_the_url(
        app, campaign):
    give(app, "demo", "Ana@marie2027.test", newsletter=True, networks=["facebook"])
    subject_id = _subject_id(app, "Ana@marie2027.test")
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    for query in ("  ANA@marie2027.test ", "Ana@marie2027.test", subject_id):
        found = _lookup(viewer, query)
        assert found.status_code == 302
        assert found.headers["Location"].endswith(f"/admin/c/demo/supporters/{subject_id}")
        assert "@" not in found.headers["Location"]
    page = viewer.get(f"/admin/c/demo/supporters/{subject_id}?lang=en").get_data(as_text=True)
    assert "Ana@marie2027.test" in page and "social_matching · facebook" in page
    assert page.count("<tr>") >= 4
    missing = _lookup(viewer, "nobody@marie2027.test")
    assert missing.status_code == 404
    with app.app_context():
        entry = db.session().scalars(select(AuditEntry).where(
            AuditEntry.action == "supporter.lookup")).first()
        assert entry.target == subject_id and "@" not in json.dumps(entry.detail)


def test_another_campaigns_supporter_is_not_found_even_by_an_owner_of_both(app, campaign):
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")
    give(app, "other", "eve@other.test", newsletter=True)
    theirs = _subject_id(app, "eve@other.test", "other")
    owner = console(app, "owner@marie2027.test", slug="demo")
    from console import make_user
    make_user(app, "owner@marie2027.test", slug="other", password=None)
    assert owner.get(f"/admin/c/other/supporters/{theirs}").status_code == 200
    for path in (f"/admin/c/demo/supporters/{theirs}",
                 f"/admin/c/demo/supporters/{theirs}/erase"):
        assert owner.get(path).status_code == 404
    for path in (f"/admin/c/demo/supporters/{theirs}/export",
                 f"/admin/c/demo/supporters/{theirs}/erase",
                 f"/admin/c/demo/supporters/{theirs}/resend"):
        assert post(owner, path, {"confirm": "yes"}).status_code == 404
    assert _lookup(owner, "eve@other.test").status_code == 404
    assert status(app, "other", "eve@other.test", "newsletter") == "given"


def test_the_access_export_holds_everything_about_the_person_and_nobody_else(app, campaign):
    give(app, "demo", "ana@marie2027.test", newsletter=True, networks=["linkedin"])
    give(app, "demo", "bob@marie2027.test", newsletter=True)
    subject_id = _subject_id(app, "ana@marie2027.test")
    owner = console(app, "owner@marie2027.test", slug="demo")
    response = post(owner, f"/admin/c/demo/supporters/{subject_id}/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    document = response.get_json()
    assert document["subject"] == {**document["subject"], "id": subject_id,
                                   "email": "ana@marie2027.test"}
    assert {e["type"] for e in document["events"]} >= {"requested", "given"}
    assert document["receipts"] and document["receipts"][0]["jws"].count(".") == 2
    assert document["notices_shown"] and all(n["text"] for n in document["notices_shown"])
    assert document["signups"][0]["choices"]
    assert {m["what"] for m in document["messages"]} >= {"confirmation", "receipt"}
    assert "bob@" not in json.dumps(document)


def test_a_receipt_downloads_as_the_signed_jws(app, client, campaign):
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    subject_id = _subject_id(app, "ana@marie2027.test")
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get(f"/admin/c/demo/supporters/{subject_id}").get_data(as_text=True)
    link = re.search(r'href="(/admin/c/demo/supporters/[^"]+\.jwt)"', page).group(1)
    download = viewer.get(link)
    assert download.mimetype == "application/jwt"
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    claims = json.loads(jws.deserialize_compact(download.get_data(as_text=True), keys,
                                                algorithms=["EdDSA"]).payload)
    assert claims["piiPrincipalId"] == subject_id
    assert viewer.get(link.replace(".jwt", "x.jwt")).status_code == 404


def test_erasure_needs_its_confirmation_then_does_what_the_command_does(app, campaign):
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    subject_id = _subject_id(app, "ana@marie2027.test")
    owner = console(app, "owner@marie2027.test", slug="demo")
    page = owner.get(f"/admin/c/demo/supporters/{subject_id}/erase?lang=en")
    assert "What is kept" in page.get_data(as_text=True)
    refused = post(owner, f"/admin/c/demo/supporters/{subject_id}/erase")
    assert refused.status_code == 400
    assert status(app, "demo", "ana@marie2027.test", "newsletter") == "given"
    done = post(owner, f"/admin/c/demo/supporters/{subject_id}/erase", {"confirm": "yes"})
    assert done.status_code == 302
    with app.app_context():
        subject = db.session().scalars(select(Subject).where(
            Subject.public_id == subject_id)).one()
        assert subject.email is None and subject.erased_at is not None
        assert db.session().scalars(select(AuditEntry).where(
            AuditEntry.action == "supporter.erase")).one().target == subject_id
        assert not db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == "ana@marie2027.test")).all()


def test_the_manage_link_is_sent_again_through_the_outbox(app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    with app.app_context():
        outbox.deliver_due(app)
    before = len(smtp_server.messages)
    subject_id = _subject_id(app, "ana@marie2027.test")
    owner = console(app, "owner@marie2027.test", slug="demo")
    assert post(owner, f"/admin/c/demo/supporters/{subject_id}/resend").status_code == 302
    with app.app_context():
        outbox.deliver_due(app)
    assert len(smtp_server.messages) == before + 1
    body = smtp_server.messages[-1].get_body(("plain",)).get_content()
    assert "/w/demo/manage/" in body


def test_viewers_and_editors_see_but_cannot_export_erase_or_resend(app, campaign):
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    subject_id = _subject_id(app, "ana@marie2027.test")
    for role in ("viewer", "editor"):
        member = console(app, f"{role}@marie2027.test", slug="demo", role=role)
        assert member.get(f"/admin/c/demo/supporters/{subject_id}").status_code == 200
        assert member.get(f"/admin/c/demo/supporters/{subject_id}/erase").status_code == 403
        for action in ("export", "erase", "resend"):
            response = post(member, f"/admin/c/demo/supporters/{subject_id}/{action}",
                            {"confirm": "yes"})
            assert response.status_code == 403, (role, action)
    assert status(app, "demo", "ana@marie2027.test", "newsletter") == "given"


def test_markup_in_an_address_or_origin_is_shown_inert(app, campaign):
    email = "a&b'c@marie2027.test"  # the markup characters an address may hold
    public_id = sign_up(app, "demo", email, newsletter=True,
                        origin='https://x.test/"><img src=x onerror=alert(1)>')
    assert public_id
    with app.app_context():
        subject = db.session().scalars(select(Subject)).one()
    owner = console(app, "owner@marie2027.test", slug="demo")
    page = owner.get(f"/admin/c/demo/supporters/{subject.public_id}").get_data(as_text=True)
    assert "a&amp;b&#39;c@marie2027.test" in page and "a&b'c" not in page
    assert "<img src=x" not in page and "&lt;img src=x" in page
