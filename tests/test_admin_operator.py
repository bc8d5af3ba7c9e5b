"""The operator's page: every campaign of the service, and opening a campaign with its first
owner, who gets an email to reach the console. Campaign owners cannot do any of it."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from consent_widget import accounts, campaigns, db, outbox
from consent_widget.models import AdminUser, AuditEntry, Campaign, Membership, OutboxMessage

from console import PASSWORD, console, csrf_token, make_user, post, sign_in

XSS = "<script>alert(1)</script>\"><img src=x onerror=alert(1)>"
CREATE = "/admin/operator/campaigns"
VALID = {"slug": "jean-2027", "name": "Jean 2027", "controller": "Association Jean 2027",
         "controller_address": "2 rue de l'Exemple, Lyon", "contact_email": "dpo@jean2027.test",
         "policy_url": "https://jean2027.test/privacy",
         "origins": "https://jean2027.test\r\nhttps://www.jean2027.test/\r\n", "locale": "en",
         "networks": ["facebook", "meetup"], "validity_days": "365",
         "owner_email": "Jean@Jean2027.test"}


@pytest.fixture
def operator(app, campaign):
    return console(app, "ops@consent.test", operator=True)


def _counts(app) -> dict:
    with app.app_context():
        session = db.session()
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Campaign, AdminUser, Membership, AuditEntry, OutboxMessage)}


def _email(app, smtp_server):
    with app.app_context():
        assert outbox.deliver_due(app)["sent"] == 1
    return smtp_server.messages[-1]


def test_the_operator_sees_every_campaign_with_its_owners(app, operator):
    make_user(app, "owner@marie2027.test", slug="demo")
    make_user(app, "viewer@marie2027.test", slug="demo", role="viewer")
    page = operator.get("/admin/operator?lang=en").get_data(as_text=True)
    row = re.search(r"<tr><td>Marie 2027</td>.*?</tr>", page).group(0)
    assert "<code>demo</code>" in row and "owner@marie2027.test" in row
    assert "viewer@marie2027.test" not in row


def test_the_form_offers_the_default_networks_ticked_and_nothing_else(operator):
    page = operator.get("/admin/operator?lang=en").get_data(as_text=True)
    boxes = re.findall(r'<input[^>]*name="networks"[^>]*>', page)
    assert len(boxes) == len(campaigns.KNOWN_NETWORKS)
    assert all("checked" in box for box in boxes)
    assert 'name="csrf_token"' in page


def test_opening_a_campaign_makes_its_owner_who_chooses_a_password_from_the_email(
        app, operator, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    response = post(operator, CREATE + "?lang=en", VALID)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/operator"
    with app.app_context():
        session = db.session()
        created = campaigns.by_slug(session, "jean-2027")
        assert (created.name, created.controller, created.contact_email, created.locale) == (
            "Jean 2027", "Association Jean 2027", "dpo@jean2027.test", "en")
        assert created.origins == ["https://jean2027.test", "https://www.jean2027.test"]
        assert created.networks == ["facebook", "meetup"]
        assert created.controller_address == "2 rue de l'Exemple, Lyon"
        assert created.validity_days == 365
        owner = accounts.user_by_email(session, "jean@jean2027.test")
        assert owner.password_hash is None and not owner.is_operator
        assert accounts.membership(session, owner, created).role == "owner"
        [entry] = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "campaign.create")).all()
        assert (entry.campaign_id, entry.target, entry.user_email) == (
            created.id, "jean-2027", "ops@consent.test")
        assert entry.detail == {"owner": "jean@jean2027.test", "new_account": True}
    message = _email(app, smtp_server)
    assert message["To"] == "jean@jean2027.test"
    assert message["Subject"] == "You are the owner of Jean 2027 on the consent console"
    body = message.get_body(("plain",)).get_content()
    assert "ops@consent.test opened the campaign Jean 2027" in body
    link = re.search(r"http://consent.test(/admin/password/set/\S+)", body).group(1)
    # The owner follows the link, chooses a password and lands in their campaign.
    owner_client = app.test_client()
    token = csrf_token(owner_client, link)
    assert owner_client.post(link, data={"csrf_token": token, "password": PASSWORD,
                                         "confirm": PASSWORD}).status_code == 302
    assert owner_client.get("/admin/").headers["Location"].endswith("/admin/c/jean-2027/")
    assert owner_client.get("/admin/c/jean-2027/embed").status_code == 200


def test_an_existing_account_is_made_owner_and_told_to_sign_in(app, operator, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    make_user(app, "jean@jean2027.test", slug="demo", role="viewer")
    before = _counts(app)
    assert post(operator, CREATE, VALID).status_code == 302
    after = _counts(app)
    assert after["AdminUser"] == before["AdminUser"]  # the account is reused
    assert after["Membership"] == before["Membership"] + 1
    with app.app_context():
        session = db.session()
        user = accounts.user_by_email(session, "jean@jean2027.test")
        assert accounts.membership(session, user, campaigns.by_slug(session, "jean-2027")
                                   ).role == "owner"
        # Their role in the other campaign is untouched.
        assert accounts.membership(session, user, campaigns.by_slug(session, "demo")
                                   ).role == "viewer"
    message = _email(app, smtp_server)
    body = message.get_body(("plain",)).get_content()
    assert "/admin/password/set/" not in body
    assert "http://consent.test/admin/login" in body
    # The person's password still works, and now opens both campaigns.
    client = app.test_client()
    assert sign_in(client, "jean@jean2027.test").status_code == 302
    assert client.get("/admin/c/jean-2027/").status_code == 200


@pytest.mark.parametrize("changes, message", [
    ({"slug": "Jean 2027"}, "the slug must be"),
    ({"slug": "-jean"}, "the slug must be"),
    ({"slug": ""}, "This field is required."),
    ({"name": ""}, "This field is required."),
    ({"name": "x" * 201}, "Field cannot be longer than 200 characters."),
    ({"controller": "  "}, "This field is required."),
    ({"contact_email": "not-an-address"}, "Invalid email address."),
    ({"policy_url": "javascript:alert(1)"}, "the policy URL must be an http(s) URL"),
    ({"policy_url": "https://x.test/" + "p" * 2000}, "Field cannot be longer than 2000"),
    ({"origins": "https://jean2027.test/path"}, "must be an origin only"),
    ({"origins": "javascript:alert(1)"}, "is not an http(s) origin"),
    ({"origins": "https://jean2027.test;script-src *"}, "does not name a valid host"),
    ({"origins": "https://jean2027.test 'unsafe-inline'"}, "does not name a valid host"),
    ({"origins": 'https://x.test"><script>alert(1)</script>'}, "must be an origin only"),
    ({"origins": 'https://x.test"onload=alert(1)'}, "does not name a valid host"),
    ({"origins": "\n".join(f"https://s{i}.test" for i in range(51))}, "At most 50 sites."),
    ({"locale": "de"}, "Not a valid choice."),
    ({"networks": ["myspace"]}, "is not a valid choice"),
    ({"networks": []}, "Tick at least one network."),
    ({"owner_email": "nope"}, "Invalid email address."),
    ({"owner_email": ""}, "This field is required."),
])
def test_each_bad_field_is_refused_with_its_reason_and_nothing_is_created(
        app, operator, changes, message):
    before = _counts(app)
    response = post(operator, CREATE + "?lang=en", {**VALID, **changes})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page.replace("&#39;", "'").replace("&#34;", '"')
    assert "<script>alert(1)" not in page
    assert _counts(app) == before


def test_a_slug_taken_already_is_refused_and_the_campaign_is_untouched(app, operator):
    before = _counts(app)
    response = post(operator, CREATE + "?lang=en", {**VALID, "slug": "demo", "name": "Stolen"})
    assert response.status_code == 400
    assert "a campaign &#39;demo&#39; exists already" in response.get_data(as_text=True)
    assert _counts(app) == before
    with app.app_context():
        assert campaigns.by_slug(db.session(), "demo").name == "Marie 2027"


def test_campaign_owners_cannot_open_campaigns_or_list_them(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    before = _counts(app)
    assert owner.get("/admin/operator").status_code == 403
    assert post(owner, CREATE, {**VALID, "owner_email": "owner@marie2027.test"}
                ).status_code == 403
    assert _counts(app) == before
    # Nor does the console point them there.
    assert "/admin/operator" not in owner.get("/admin/c/demo/").get_data(as_text=True)


def test_a_campaign_name_with_markup_is_inert_on_the_page_and_in_the_email(
        app, operator, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    assert post(operator, CREATE, {**VALID, "name": XSS, "controller": XSS}
                ).status_code == 302
    page = operator.get("/admin/operator").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    message = _email(app, smtp_server)
    html_part = message.get_body(("html",)).get_content()
    assert "<script>alert(1)" not in html_part and "<img src=x" not in html_part
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_part


def test_the_operators_page_and_email_are_in_french(app, operator, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    page = operator.get("/admin/operator?lang=fr").get_data(as_text=True)
    assert "Ouvrir une campagne" in page and "Nom public" in page
    assert post(operator, CREATE, {**VALID, "locale": "fr"}).status_code == 302
    message = _email(app, smtp_server)
    assert message["Subject"] == ("Vous êtes propriétaire de Jean 2027 sur la console de "
                                  "consentement")
