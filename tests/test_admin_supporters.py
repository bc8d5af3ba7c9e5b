"""Answering a supporter from the console: lookup, record, receipts, Art. 15 export, Art. 17
erasure behind a confirmation, the manage link sent again; every one audited, none of it
reaching another campaign or another person."""
from __future__ import annotations

import json
import re

import jwt
from sqlalchemy import select

from consent_widget import db, notices, outbox, receipts, webhooks
from consent_widget.campaigns import create_campaign
from consent_widget.models import (AuditEntry, Campaign, ConsentState, Notice, OutboxMessage,
                                   Receipt, Subject)

from conftest import run_json
from console import console, csrf_token, make_user, post
from helpers import confirm, give, sign_up, status

ANA, BOB = "ana@marie2027.test", "bob@marie2027.test"


def _subject_id(app, email: str, slug: str = "demo") -> str:
    with app.app_context():
        return db.session().scalars(select(Subject.public_id).join(
            Campaign, Campaign.id == Subject.campaign_id).where(
            Campaign.slug == slug, Subject.email == email)).one()


def _lookup(client, query: str, slug: str = "demo"):
    path = f"/admin/c/{slug}/supporters"
    return client.post(path, data={"csrf_token": csrf_token(client, path), "query": query})


def _audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return list(db.session().scalars(select(AuditEntry).where(AuditEntry.action == action)
                                         .order_by(AuditEntry.id)))


def _endpoint(app, slug: str = "demo") -> str:
    """A webhook endpoint of the campaign; nothing is delivered to it in these tests (an address
    literal, so that adding it needs no name resolution)."""
    with app.app_context():
        with db.transaction() as session:
            campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
            return webhooks.add_endpoint(session, campaign, "https://93.184.215.14/hooks").public_id


def _other_campaign(app) -> None:
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")


# --- lookup ---------------------------------------------------------------------------------
def test_a_supporter_is_found_by_address_in_any_case_or_by_id_and_the_address_stays_out_of_urls(
        app, campaign):
    give(app, "demo", "Ana@marie2027.test", newsletter=True, networks=["facebook"])
    subject_id = _subject_id(app, "Ana@marie2027.test")
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    for query in ("  ANA@MARIE2027.test ", "Ana@marie2027.test", f" {subject_id} "):
        found = _lookup(viewer, query)
        assert found.status_code == 302, query
        assert found.headers["Location"].endswith(f"/admin/c/demo/supporters/{subject_id}")
        assert "@" not in found.headers["Location"] and "%40" not in found.headers["Location"]
    page = viewer.get(f"/admin/c/demo/supporters/{subject_id}?lang=en").get_data(as_text=True)
    assert "Ana@marie2027.test" in page and "Matching with Facebook" in page
    entries = _audit(app, "supporter.lookup")
    assert entries and all(entry.target == subject_id for entry in entries)
    assert not any("@" in json.dumps(entry.detail) for entry in entries)


def test_an_unknown_supporter_gets_a_clear_answer_and_the_miss_is_audited_without_the_address(
        app, campaign):
    give(app, "demo", ANA, newsletter=True)
    owner = console(app, "owner@marie2027.test", slug="demo")
    for query in ("nobody@marie2027.test", "sub_doesnotexist"):
        missing = owner.post("/admin/c/demo/supporters?lang=en", data={
            "csrf_token": csrf_token(owner, "/admin/c/demo/supporters"), "query": query})
        assert missing.status_code == 404
        assert "No supporter of this campaign has this address or id." in \
            missing.get_data(as_text=True)
        assert query not in missing.get_data(as_text=True)  # the box is emptied
    misses = [e for e in _audit(app, "supporter.lookup") if e.detail.get("found") is False]
    assert [e.detail["by"] for e in misses][-2:] == ["email", "id"]
    assert all(e.target == "" and "nobody" not in json.dumps(e.detail) for e in misses)


def test_the_lookup_refuses_what_is_neither_an_address_nor_an_id(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    for query, message in (("", "Type an email address or a supporter id."),
                           ("   ", "Type an email address or a supporter id."),
                           ("not an address", "neither an email address nor a supporter id"),
                           ("<script>alert(1)</script>", "neither an email address"),
                           ("x" * 400 + "@marie2027.test", "too long")):
        response = owner.post("/admin/c/demo/supporters?lang=en", data={
            "csrf_token": csrf_token(owner, "/admin/c/demo/supporters"), "query": query})
        assert response.status_code == 400, query
        page = response.get_data(as_text=True)
        assert message in page and "<script>alert(1)</script>" not in page
    assert _audit(app, "supporter.lookup") == []


def test_another_campaigns_supporter_is_not_found_even_by_an_owner_of_both(app, campaign):
    _other_campaign(app)
    give(app, "other", "eve@other.test", newsletter=True)
    give(app, "demo", ANA, newsletter=True)
    theirs = _subject_id(app, "eve@other.test", "other")
    with app.app_context():
        their_receipt = db.session().scalars(select(Receipt.id).join(
            Subject, Subject.id == Receipt.subject_id).where(Subject.public_id == theirs)).first()
    owner = console(app, "owner@marie2027.test", slug="demo")
    make_user(app, "owner@marie2027.test", slug="other", password=None)
    assert owner.get(f"/admin/c/other/supporters/{theirs}").status_code == 200
    for path in (f"/admin/c/demo/supporters/{theirs}",
                 f"/admin/c/demo/supporters/{theirs}/erase",
                 f"/admin/c/demo/supporters/{theirs}/receipts/{their_receipt}",
                 f"/admin/c/demo/supporters/{theirs}/receipts/{their_receipt}/download"):
        assert owner.get(path).status_code == 404, path
    for path in (f"/admin/c/demo/supporters/{theirs}/export",
                 f"/admin/c/demo/supporters/{theirs}/erase",
                 f"/admin/c/demo/supporters/{theirs}/resend"):
        assert post(owner, path, {"confirm": "y"}).status_code == 404, path
    assert _lookup(owner, "eve@other.test").status_code == 404
    assert _lookup(owner, theirs).status_code == 404
    # Nor does this campaign's supporter's URL open another campaign's receipt.
    ours = _subject_id(app, ANA)
    assert owner.get(f"/admin/c/demo/supporters/{ours}/receipts/{their_receipt}/download") \
        .status_code == 404
    assert status(app, "other", "eve@other.test", "newsletter") == "given"
    assert _audit(app, "supporter.export") == [] and _audit(app, "supporter.erase") == []


# --- the record -----------------------------------------------------------------------------
def test_the_record_shows_history_states_emails_and_webhooks_of_this_person_only(app, campaign):
    _endpoint(app)  # webhooks about each person are queued, to be told apart
    give(app, "demo", ANA, newsletter=True, networks=["linkedin"])
    give(app, "demo", BOB, newsletter=True, networks=["facebook"])
    subject_id = _subject_id(app, ANA)
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get(f"/admin/c/demo/supporters/{subject_id}?lang=en").get_data(as_text=True)
    with app.app_context():
        newsletter = db.session().scalars(select(ConsentState).join(
            Subject, Subject.id == ConsentState.subject_id).where(
            Subject.public_id == subject_id, ConsentState.purpose == "newsletter")).one()
        notice = db.session().get(Notice, newsletter.notice_id)
    assert notice.text_sha256 in page
    # History, newest first: the confirmation's "given" above the signup's "requested".
    history = page[page.index("Ledger events about"):page.index("Signed receipts")]
    assert history.index(">given<") < history.index(">requested<")
    emails = page[page.index("Emails queued"):page.index("Webhooks sent")]
    assert "<code>confirmation</code>" in emails and "<code>receipt</code>" in emails
    assert "waiting" in emails
    hooks = page[page.index("Webhooks sent"):]
    assert hooks.count("consent.given") == 2 and "https://93.184.215.14/hooks" in hooks
    assert BOB not in page and _subject_id(app, BOB) not in page and "Facebook" not in hooks


def test_a_receipt_reads_as_the_person_reads_it_and_downloads_as_the_signed_jws(app, client,
                                                                              campaign):
    give(app, "demo", ANA, newsletter=True)
    subject_id = _subject_id(app, ANA)
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = viewer.get(f"/admin/c/demo/supporters/{subject_id}").get_data(as_text=True)
    read = re.search(r'href="(/admin/c/demo/supporters/[^"]+/receipts/[^"/]+)"', page).group(1)
    receipt_id = read.rsplit("/", 1)[1]
    shown = viewer.get(read + "?lang=en").get_data(as_text=True)
    assert "Consent receipt" in shown and "Your choices when this receipt was issued" in shown
    assert receipt_id in shown and ANA not in shown  # the receipt names the opaque id only
    download = viewer.get(read + "/download")
    assert download.status_code == 200 and download.mimetype == "application/jwt"
    assert download.headers["Content-Disposition"] == \
        f'attachment; filename="consent-receipt-{receipt_id}.jwt"'
    token = download.get_data(as_text=True)
    kid = jwt.get_unverified_header(token)["kid"]
    [key] = [k for k in client.get("/.well-known/jwks.json").get_json()["keys"]
             if k["kid"] == kid]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"],
                        issuer="http://consent.test")
    assert claims["piiPrincipalId"] == subject_id and claims["consentReceiptID"] == receipt_id
    assert viewer.get(read[:-1] + "x/download").status_code == 404


# --- the access export (Art. 15) --------------------------------------------------------------
def test_the_access_export_holds_everything_about_the_person_and_nobody_else(app, campaign):
    _endpoint(app)
    sign_up(app, "demo", ANA, newsletter=True, networks=["linkedin"], locale="en",
            origin="https://marie2027.test/join")
    give(app, "demo", ANA, newsletter=True, networks=["linkedin"])
    give(app, "demo", BOB, newsletter=True, networks=["facebook"])
    subject_id, bob_id = _subject_id(app, ANA), _subject_id(app, BOB)
    owner = console(app, "owner@marie2027.test", slug="demo")
    response = post(owner, f"/admin/c/demo/supporters/{subject_id}/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    document = response.get_json()
    assert document["format"] == "consent_widget.subject-access-export.v1"
    assert document["subject"]["id"] == subject_id and document["email"] == ANA
    assert document["controller"]["contact"] == "dpo@marie2027.test"
    first = document["signups"][-1]
    assert first["origin"] == "https://marie2027.test/join" and first["locale"] == "en"
    assert first["global_privacy_control"] is False and first["confirmed_at"] is None
    assert first["choices"]["social_matching:linkedin"] is True
    assert first["choices"]["social_matching:facebook"] is False
    assert set(first["offered"]) == set(first["choices"])
    assert [e["seq"] for e in document["events"]] == \
        sorted((e["seq"] for e in document["events"]), reverse=True)
    assert {e["type"] for e in document["events"]} >= {"requested", "refused", "given"}
    assert {(s["purpose"], s["network"], s["status"]) for s in document["states"]} >= {
        ("newsletter", "", "given"), ("social_matching", "linkedin", "given")}
    assert document["receipts"] and all(r["jws"].count(".") == 2 for r in document["receipts"])
    assert all(r["claims"]["piiPrincipalId"] == subject_id for r in document["receipts"])
    assert {m["template"] for m in document["emails"]} == {"confirmation", "receipt"}
    assert all(set(m) == {"template", "status", "attempts", "queued_at", "sent_at"}
               for m in document["emails"])  # metadata, never the email's content
    assert {d["type"] for d in document["webhook_deliveries"]} == {"consent.given"}
    assert {d["recipient"] for d in document["webhook_deliveries"]} == {"93.184.215.14"}
    # Every text named anywhere in the export is in it, word for word, in both languages shown.
    texts = {n["text_sha256"]: n for n in document["notices"]}
    named = {ref["text_sha256"] for s in document["signups"] for ref in s["offered"].values()}
    named |= {e["notice"]["text_sha256"] for e in document["events"] if e["notice"]}
    assert named and named <= set(texts)
    assert all(notices.text_sha256(n["text"]) == sha for sha, n in texts.items())
    assert {n["locale"] for n in document["notices"]} == {"fr", "en"}
    dumped = json.dumps(document)
    assert BOB not in dumped and bob_id not in dumped
    [entry] = _audit(app, "supporter.export")
    assert entry.target == subject_id and "@" not in json.dumps(entry.detail)


def test_the_export_of_an_erased_supporter_says_what_is_left(app, runner, campaign):
    give(app, "demo", ANA, newsletter=True)
    subject_id = _subject_id(app, ANA)
    run_json(runner, "subject", "erase", ANA)
    owner = console(app, "owner@marie2027.test", slug="demo")
    document = post(owner, f"/admin/c/demo/supporters/{subject_id}/export").get_json()
    assert document["email"] is None and document["subject"]["erased_at"]
    assert document["emails"] == [] and document["events"][0]["type"] == "withdrawn"
    assert ANA not in json.dumps(document)


# --- erasure (Art. 17) ------------------------------------------------------------------------
def test_erasure_says_what_it_does_needs_its_confirmation_then_does_what_the_command_does(
        app, campaign):
    _endpoint(app)
    give(app, "demo", ANA, newsletter=True, networks=["facebook"])
    give(app, "demo", BOB, newsletter=True)
    subject_id = _subject_id(app, ANA)
    owner = console(app, "owner@marie2027.test", slug="demo")
    page = owner.get(f"/admin/c/demo/supporters/{subject_id}/erase?lang=en").get_data(
        as_text=True)
    assert "What is erased" in page and "What is kept" in page and "keyed hash" in page
    assert 'type="checkbox"' in page and 'name="confirm"' in page
    for data in ({}, {"confirm": ""}):
        refused = post(owner, f"/admin/c/demo/supporters/{subject_id}/erase?lang=en", data)
        assert refused.status_code == 400
        assert "Nothing was erased" in refused.get_data(as_text=True)
    assert status(app, "demo", ANA, "newsletter") == "given"
    assert _subject_id(app, ANA) == subject_id and _audit(app, "supporter.erase") == []
    done = post(owner, f"/admin/c/demo/supporters/{subject_id}/erase", {"confirm": "y"})
    assert done.status_code == 302
    assert done.headers["Location"].endswith(f"/admin/c/demo/supporters/{subject_id}")
    with app.app_context():
        session = db.session()
        subject = session.scalars(select(Subject).where(Subject.public_id == subject_id)).one()
        assert subject.email is None and subject.erased_at is not None
        statuses = dict(session.execute(select(
            ConsentState.purpose + ":" + ConsentState.network, ConsentState.status).where(
            ConsentState.subject_id == subject.id)).all())
        assert statuses == {"newsletter:": "withdrawn", "social_matching:facebook": "withdrawn",
                            "social_matching:linkedin": "refused"}
        assert not session.scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == ANA)).all()
        bodies = [json.loads(row.payload) for row in session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook"))]
        erased = [b for b in bodies if "body" in b and b["body"]["type"] == "subject.erased"]
        assert [b["body"]["data"]["subject_id"] for b in erased] == [subject_id]
        # The withdrawal receipt says what the command's says.
        newest = session.scalars(select(Receipt).where(Receipt.subject_id == subject.id)
                                 .order_by(Receipt.issued_at.desc())).first()
        assert receipts.decode(newest)["collectionMethod"] == \
            "erasure requested from the controller"
    # The suppression entry: the keyed hash still answers "withdrawn" for the address.
    assert status(app, "demo", ANA, "newsletter") == "withdrawn"
    assert status(app, "demo", BOB, "newsletter") == "given"
    [entry] = _audit(app, "supporter.erase")
    assert entry.target == subject_id and "@" not in json.dumps(entry.detail)
    record = owner.get(f"/admin/c/demo/supporters/{subject_id}?lang=en").get_data(as_text=True)
    assert "Erased on" in record and "/erase" not in record and "/resend" not in record
    again = post(owner, f"/admin/c/demo/supporters/{subject_id}/erase", {"confirm": "y"})
    assert again.status_code == 409 and len(_audit(app, "supporter.erase")) == 1
    assert _lookup(owner, ANA).status_code == 302  # still found, by the keyed hash


# --- the manage link, sent again ----------------------------------------------------------------
def test_the_manage_link_is_sent_again_through_the_outbox_in_the_persons_language(
        app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    confirm(app, sign_up(app, "demo", ANA, newsletter=True, locale="en"))
    with app.app_context():
        outbox.deliver_due(app)
    before = len(smtp_server.messages)
    subject_id = _subject_id(app, ANA)
    owner = console(app, "owner@marie2027.test", slug="demo")
    response = post(owner, f"/admin/c/demo/supporters/{subject_id}/resend")
    assert response.status_code == 302
    with app.app_context():
        outbox.deliver_due(app)
    assert len(smtp_server.messages) == before + 1
    message = smtp_server.messages[-1]
    assert message["To"] == ANA
    assert message["Subject"] == "Your link to manage your choices for Marie 2027"
    body = message.get_body(("plain",)).get_content()
    link = re.search(r"http://consent\.test(/w/demo/manage/\S+)", body).group(1)
    assert app.test_client().get(link).status_code == 200  # the link works
    [entry] = _audit(app, "supporter.resend_link")
    assert entry.target == subject_id


def test_an_erased_supporter_gets_no_email(app, runner, campaign):
    give(app, "demo", ANA, newsletter=True)
    subject_id = _subject_id(app, ANA)
    run_json(runner, "subject", "erase", ANA)
    owner = console(app, "owner@marie2027.test", slug="demo")
    with app.app_context():
        queued = db.session().query(OutboxMessage).filter_by(kind="email").count()
    response = post(owner, f"/admin/c/demo/supporters/{subject_id}/resend?lang=en")
    assert response.status_code == 409
    assert "no one to write to" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session().query(OutboxMessage).filter_by(kind="email").count() == queued
    assert _audit(app, "supporter.resend_link") == []


# --- roles ----------------------------------------------------------------------------------
def test_viewers_and_editors_see_but_cannot_export_erase_or_resend(app, campaign):
    give(app, "demo", ANA, newsletter=True)
    subject_id = _subject_id(app, ANA)
    for role in ("viewer", "editor"):
        member = console(app, f"{role}@marie2027.test", slug="demo", role=role)
        page = member.get(f"/admin/c/demo/supporters/{subject_id}")
        assert page.status_code == 200
        assert f"/{subject_id}/export" not in page.get_data(as_text=True)
        assert member.get(f"/admin/c/demo/supporters/{subject_id}/erase").status_code == 403
        for action in ("export", "erase", "resend"):
            response = post(member, f"/admin/c/demo/supporters/{subject_id}/{action}",
                            {"confirm": "y"})
            assert response.status_code == 403, (role, action)
    assert status(app, "demo", ANA, "newsletter") == "given"
    for action in ("supporter.export", "supporter.erase", "supporter.resend_link"):
        assert _audit(app, action) == []


def test_an_owner_sees_the_actions(app, campaign):
    give(app, "demo", ANA, newsletter=True)
    subject_id = _subject_id(app, ANA)
    owner = console(app, "owner@marie2027.test", slug="demo")
    page = owner.get(f"/admin/c/demo/supporters/{subject_id}").get_data(as_text=True)
    for action in ("export", "erase", "resend"):
        assert f"/admin/c/demo/supporters/{subject_id}/{action}" in page
    assert owner.get("/admin/c/demo/supporters").status_code == 200


# --- stored XSS -------------------------------------------------------------------------------
def test_markup_in_an_address_or_an_origin_is_shown_inert(app, campaign):
    email = "a&b'c@marie2027.test"  # the markup characters an address may hold
    sign_up(app, "demo", email, newsletter=True,
            origin='https://x.test/"><img src=x onerror=alert(1)><script>alert(1)</script>')
    with app.app_context():
        subject = db.session().scalars(select(Subject)).one()
    owner = console(app, "owner@marie2027.test", slug="demo")
    assert _lookup(owner, email).status_code == 302
    page = owner.get(f"/admin/c/demo/supporters/{subject.public_id}").get_data(as_text=True)
    assert "a&amp;b&#39;c@marie2027.test" in page and "a&b'c" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>alert(1)</script>" not in page
    export = post(owner, f"/admin/c/demo/supporters/{subject.public_id}/export")
    assert export.mimetype == "application/json"
    assert export.headers["X-Content-Type-Options"] == "nosniff"
    assert export.get_json()["email"] == email
