"""Every console route, read from the URL map, against the people it must refuse: anonymous
visitors, members of another campaign, viewers (for changes), campaign owners (for the
operator's pages), and posts without a valid CSRF token. A route added later is tried too; one
declared without an access rule fails here."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from consent_widget import db
from consent_widget.campaigns import create_campaign
from consent_widget.models import AuditEntry

from console import console, csrf_token

READS = {"GET"}
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def _console_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin."):
            yield rule, app.view_functions[rule.endpoint].admin_access


def _url(rule, slug: str = "demo") -> str:
    values = {name: (slug if name == "slug" else "1") for name in rule.arguments}
    if "filename" in values:
        values["filename"] = "admin.css"
    return rule.build(values, append_unknown=False)[1]


@pytest.fixture
def other_campaign(app, campaign):
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other 2027", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")


def _audit_count(app) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(AuditEntry))


def test_every_console_view_declares_its_access(app):
    rules = list(_console_rules(app))
    assert len(rules) > 10
    for rule, access in rules:
        assert access["access"] in ("public", "signed-in", "operator", "campaign"), rule
        if access["access"] == "campaign":
            assert rule.rule.startswith("/admin/c/<slug>"), rule


def test_anonymous_visitors_are_sent_to_sign_in(app, campaign):
    client = app.test_client()
    token = csrf_token(client)  # a valid token: the refusal must come from the access rule
    for rule, access in _console_rules(app):
        if access["access"] == "public":
            continue
        url = _url(rule)
        for method in rule.methods & (READS | CHANGES):
            response = client.open(url, method=method, data={"csrf_token": token})
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.headers["Location"].startswith("/admin/login"), (method, url)


def test_members_of_another_campaign_get_not_found(app, other_campaign):
    outsider = console(app, "outsider@other.test", slug="other")
    token = csrf_token(outsider, "/admin/account")
    before = _audit_count(app)
    for rule, access in _console_rules(app):
        if access["access"] != "campaign":
            continue
        url = _url(rule, "demo")
        for method in rule.methods & (READS | CHANGES):
            response = outsider.open(url, method=method, data={"csrf_token": token})
            assert response.status_code == 404, (method, url, response.status_code)
    assert _audit_count(app) == before
    # ...and the same person reaches their own campaign.
    assert outsider.get("/admin/c/other/").status_code == 200


def test_viewers_cannot_change_anything(app, campaign):
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    token = csrf_token(viewer, "/admin/account")
    before = _audit_count(app)
    tried = 0
    for rule, access in _console_rules(app):
        if access["access"] != "campaign" or access["write"] == "viewer":
            continue
        for method in rule.methods & CHANGES:
            tried += 1
            response = viewer.open(_url(rule), method=method, data={"csrf_token": token})
            assert response.status_code == 403, (method, rule.rule, response.status_code)
    assert tried > 0
    assert _audit_count(app) == before


def test_editors_cannot_do_what_only_owners_do(app, campaign):
    editor = console(app, "editor@marie2027.test", slug="demo", role="editor")
    token = csrf_token(editor, "/admin/account")
    for rule, access in _console_rules(app):
        if access["access"] != "campaign" or access["write"] != "owner":
            continue
        for method in rule.methods & CHANGES:
            response = editor.open(_url(rule), method=method, data={"csrf_token": token})
            assert response.status_code == 403, (method, rule.rule)


def test_campaign_owners_cannot_reach_the_operators_pages(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    token = csrf_token(owner, "/admin/account")
    tried = 0
    for rule, access in _console_rules(app):
        if access["access"] != "operator":
            continue
        for method in rule.methods & (READS | CHANGES):
            tried += 1
            response = owner.open(_url(rule), method=method, data={"csrf_token": token})
            assert response.status_code == 403, (method, rule.rule)
    assert tried > 0


def test_every_change_without_a_valid_csrf_token_is_refused(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo", operator=True)
    before = _audit_count(app)
    for rule, access in _console_rules(app):
        for method in rule.methods & CHANGES:
            for data in ({}, {"csrf_token": "forged"}):
                response = owner.open(_url(rule), method=method, data=data)
                assert response.status_code == 400, (method, rule.rule, data)
    assert _audit_count(app) == before


def test_console_pages_carry_strict_headers(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    for rule, access in _console_rules(app):
        if "GET" not in rule.methods or rule.arguments - {"slug"}:
            continue
        response = owner.get(_url(rule))
        if response.mimetype != "text/html":
            continue
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, rule.rule
        assert "unsafe-inline" not in policy
        assert response.headers["Cache-Control"] == "no-store", rule.rule
