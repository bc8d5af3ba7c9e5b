"""Signing in to the console: passwords, links that work once, the second factor, throttling,
the session cookie, invitations, and the audit log nobody can edit."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from consent_widget import accounts, db, outbox
from consent_widget.cli import main
from consent_widget.models import AdminUser, AuditEntry, Invitation, Membership, utcnow

from conftest import run_json
from test_limits import redis_url  # noqa: F401  (a fixture)
from console import PASSWORD, console, csrf_token, make_user, post, sign_in


def _path(url: str) -> str:
    return urlsplit(url).path


def _audit(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return db.session().scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


def _user(app, email: str) -> AdminUser:
    with app.app_context():
        return db.session().scalars(select(AdminUser).where(AdminUser.email == email)).one()


# --- the first login, from the command's link ---------------------------------------------
def test_admin_create_prints_a_link_that_sets_the_password_once(app, runner, campaign):
    created = run_json(runner, "admin", "create", "Owner@Marie2027.test", "--campaign", "demo",
                       "--role", "owner")
    assert created["email"] == "owner@marie2027.test"
    assert created["campaign"] == "demo" and created["role"] == "owner"
    assert created["set_password_url"].startswith("http://consent.test/admin/password/set/")
    path = _path(created["set_password_url"])
    client = app.test_client()
    page = client.get(path)
    assert page.status_code == 200 and "owner@marie2027.test" in page.get_data(as_text=True)
    token = csrf_token(client, path)
    short = client.post(path, data={"csrf_token": token, "password": "short",
                                    "confirm": "short"})
    assert short.status_code == 400 and "12" in short.get_data(as_text=True)
    done = client.post(path, data={"csrf_token": token, "password": PASSWORD,
                                   "confirm": PASSWORD})
    assert done.status_code == 302
    assert client.get("/admin/").headers["Location"].endswith("/admin/c/demo/")
    # The link worked once: the password it set changed what it was signed over.
    assert app.test_client().get(path).status_code == 400
    assert _audit(app, "account.create") and _audit(app, "password.set")


def test_admin_create_refuses_bad_input_and_changes_nothing(app, runner, campaign):
    for args in (["admin", "create", "not-an-address", "--operator"],
                 ["admin", "create", "x@marie2027.test"],
                 ["admin", "create", "x@marie2027.test", "--operator", "--campaign", "demo"],
                 ["admin", "create", "x@marie2027.test", "--campaign", "nope"]):
        result = runner.invoke(main, args)
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output
    with app.app_context():
        assert db.session().scalars(select(AdminUser)).all() == []


def test_an_operator_is_made_by_the_command(app, runner):
    created = run_json(runner, "admin", "create", "ops@consent.test", "--operator")
    assert created["operator"] is True and created["campaign"] is None
    assert _user(app, "ops@consent.test").is_operator


def test_a_forged_or_expired_set_password_link_is_refused(app, campaign):
    make_user(app, "owner@marie2027.test", slug="demo", password=None)
    with app.app_context(), app.test_request_context():
        user = accounts.user_by_email(db.session(), "owner@marie2027.test")
        token = accounts.set_password_token(app.config["SECRET_KEY"], user)
        forged = accounts.set_password_token("another secret", user)
    client = app.test_client()
    client.get("/admin/login?lang=en")
    assert client.get(f"/admin/password/set/{forged}").status_code == 400
    assert client.get(f"/admin/password/set/{token[:-2]}xx").status_code == 400
    app.config["ADMIN_LINK_MAX_AGE"] = -1
    expired = client.get(f"/admin/password/set/{token}")
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)


# --- signing in ----------------------------------------------------------------------------
def test_a_wrong_password_or_unknown_account_is_refused_alike(app, campaign):
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    client.get("/admin/login?lang=en")
    wrong = sign_in(client, "owner@marie2027.test", "not the password at all")
    unknown = sign_in(client, "nobody@marie2027.test", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    for page in (wrong, unknown):
        assert "do not match an account" in page.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert len(_audit(app, "login.failed")) == 1


def test_sign_in_rotates_the_session_and_sets_a_strict_cookie(app, campaign):
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    client.get("/admin/login")
    before = client.get_cookie("consent_console", path="/admin")
    serializer = app.session_interface.get_signing_serializer(app)
    planted = serializer.loads(before.value)
    response = sign_in(client, "owner@marie2027.test")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/admin" in header
    assert "Secure" in header
    after = serializer.loads(client.get_cookie("consent_console", path="/admin").value)
    assert after["sid"] and after.get("csrf") != planted.get("csrf")
    # Someone who planted or kept the cookie from before sign-in is not signed in by it.
    attacker = app.test_client()
    attacker.set_cookie("consent_console", before.value, path="/admin")
    assert attacker.get("/admin/").status_code == 302


def test_no_cookie_is_set_outside_the_console(app, campaign):
    client = app.test_client()
    for path in ("/w/demo", "/.well-known/jwks.json", "/healthz"):
        assert "Set-Cookie" not in client.get(path).headers, path
    assert "Set-Cookie" in client.get("/admin/login").headers


def test_sign_out_ends_every_copy_of_the_session(app, campaign):
    client = console(app, "owner@marie2027.test", slug="demo")
    stolen = client.get_cookie("consent_console", path="/admin").value
    assert post(client, "/admin/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie("consent_console", stolen, path="/admin")
    assert thief.get("/admin/c/demo/team").status_code == 302
    assert client.get("/admin/c/demo/team").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.test/", "//evil.test/", "/\\evil.test",
                                    "javascript:alert(1)", "/w/demo", "http:/admin"])
def test_next_never_leaves_the_console(app, campaign, target):
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/admin/login", query_string={"next": target},
                           data={"csrf_token": token, "email": "owner@marie2027.test",
                                 "password": PASSWORD})
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "consent.test") and location.path.startswith("/admin")


def test_next_inside_the_console_is_followed(app, campaign):
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    redirect_to_login = client.get("/admin/c/demo/team")
    login_path = redirect_to_login.headers["Location"]
    token = csrf_token(client)
    response = client.post(login_path, data={"csrf_token": token,
                                             "email": "owner@marie2027.test",
                                             "password": PASSWORD})
    assert response.headers["Location"].endswith("/admin/c/demo/team")


def test_sign_in_is_throttled_per_account_and_per_address(app, campaign):
    app.config.update(RATELIMIT_LOGIN_PER_ACCOUNT="3 per hour", RATELIMIT_LOGIN_PER_IP="5 per hour")
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    for _ in range(3):
        assert sign_in(client, "owner@marie2027.test", "wrong password here").status_code == 401
    # The right password is refused too once the account's attempts are spent.
    assert sign_in(client, "owner@marie2027.test").status_code == 429
    other = app.test_client()
    assert sign_in(other, "someone@marie2027.test", "wrong password here").status_code == 401
    # The address has now made five attempts: a sixth, on any account, is refused.
    assert sign_in(other, "third@marie2027.test", "wrong password here").status_code == 429
    assert client.get("/admin/").status_code == 302


def test_throttling_is_shared_through_redis(app_config, campaign, app, redis_url):
    from consent_widget import create_app
    # A secret of its own: the counters' keys derive from it, so no earlier run's count is met.
    app_config.update(RATELIMIT_STORAGE_URL=redis_url, RATELIMIT_LOGIN_PER_ACCOUNT="2 per hour",
                      DATABASE_URL=app.config["DATABASE_URL"], SECRET_KEY=secrets.token_hex(16))
    first, second = create_app(app_config), create_app(app_config)
    make_user(first, "owner@marie2027.test", slug="demo")
    assert sign_in(first.test_client(), "owner@marie2027.test", "wrong password 1").status_code == 401
    assert sign_in(second.test_client(), "owner@marie2027.test", "wrong password 2").status_code == 401
    assert sign_in(first.test_client(), "owner@marie2027.test").status_code == 429


# --- the second factor ---------------------------------------------------------------------
def _enable_totp(app, client) -> tuple[str, list[str], str]:
    page = client.get("/admin/account").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    wrong = post(client, "/admin/account/second-factor", {"secret": secret, "code": "000000"})
    assert wrong.status_code == 400
    first_code = pyotp.TOTP(secret).now()
    done = post(client, "/admin/account/second-factor", {"secret": secret, "code": first_code})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([0-9a-f]{10})</code></li>", done.get_data(as_text=True))
    assert len(codes) == accounts.RECOVERY_CODES
    return secret, codes, first_code


def test_totp_is_asked_after_the_password_and_a_code_works_once(app, campaign):
    client = console(app, "owner@marie2027.test", slug="demo")
    secret, codes, used = _enable_totp(app, client)
    # Turning it on ended the account's other sessions but kept this one.
    assert client.get("/admin/c/demo/team").status_code == 200
    fresh = app.test_client()
    response = sign_in(fresh, "owner@marie2027.test")
    assert response.headers["Location"].endswith("/admin/login/second-factor")
    assert fresh.get("/admin/c/demo/team").status_code == 302  # not signed in yet
    # The code used to turn it on cannot be replayed (the very code, whatever the clock says
    # now: a fresh code of a later time step would be a new one).
    token = csrf_token(fresh, "/admin/login/second-factor")
    replay = fresh.post("/admin/login/second-factor", data={"csrf_token": token, "code": used})
    assert replay.status_code == 401
    recovery = fresh.post("/admin/login/second-factor",
                          data={"csrf_token": token, "code": codes[0]})
    assert recovery.status_code == 302
    assert fresh.get("/admin/c/demo/team").status_code == 200
    again = app.test_client()
    sign_in(again, "owner@marie2027.test")
    token = csrf_token(again, "/admin/login/second-factor")
    assert again.post("/admin/login/second-factor",
                      data={"csrf_token": token, "code": codes[0]}).status_code == 401
    assert again.post("/admin/login/second-factor",
                      data={"csrf_token": token, "code": codes[1]}).status_code == 302
    assert _user(app, "owner@marie2027.test").recovery_codes.__len__() == accounts.RECOVERY_CODES - 2


@pytest.mark.parametrize("lang, heading", [
    ("fr", "Seconde étape : votre application d’authentification"),
    ("en", "Second step: your authenticator")])
def test_the_language_chosen_at_sign_in_is_kept_through_the_second_step(app, campaign, lang,
                                                                        heading):
    _secret, codes, _used = _enable_totp(app, console(app, "owner@marie2027.test", slug="demo"))
    fresh = app.test_client()
    token = csrf_token(fresh, f"/admin/login?lang={lang}")
    response = fresh.post(f"/admin/login?lang={lang}", data={
        "csrf_token": token, "email": "owner@marie2027.test", "password": PASSWORD})
    assert _path(response.headers["Location"]) == "/admin/login/second-factor"
    # Followed as a browser does: no ?lang= on the address any more, and a browser asking for
    # the other language, so that a lost choice shows.
    other = "en" if lang == "fr" else "fr"
    page = fresh.get(response.headers["Location"], headers={"Accept-Language": other})
    text = page.get_data(as_text=True)
    assert f'<html lang="{lang}"' in text and heading in text
    # Signed in and out again, the console still speaks the language chosen.
    signed_in = fresh.post("/admin/login/second-factor", data={
        "csrf_token": csrf_token(fresh, "/admin/login/second-factor"),
        "code": codes[0]})
    assert signed_in.status_code == 302
    page = fresh.get("/admin/account", headers={"Accept-Language": other})
    assert f'<html lang="{lang}"' in page.get_data(as_text=True)


def test_the_second_step_cannot_be_reached_without_the_password(app, campaign):
    client = app.test_client()
    assert client.get("/admin/login/second-factor").status_code == 302


# --- password reset ------------------------------------------------------------------------
def test_password_reset_emails_a_link_and_tells_nobody_whether_the_account_exists(
        app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    make_user(app, "owner@marie2027.test", slug="demo")
    client = app.test_client()
    client.get("/admin/login?lang=en")
    for email in ("owner@marie2027.test", "nobody@marie2027.test"):
        response = client.post("/admin/password/forgot",
                               data={"csrf_token": csrf_token(client, "/admin/password/forgot"),
                                     "email": email})
        assert response.status_code == 200 and "If an account exists" in response.get_data(
            as_text=True)
    with app.app_context():
        assert outbox.deliver_due(app)["sent"] == 1
    message = smtp_server.messages[-1]
    assert message["To"] == "owner@marie2027.test"
    body = message.get_body(("plain",)).get_content()
    link = re.search(r"http://consent.test(/admin/password/set/\S+)", body).group(1)
    new = "another long passphrase"
    token = csrf_token(client, link)
    assert client.post(link, data={"csrf_token": token, "password": new,
                                   "confirm": new}).status_code == 302
    assert sign_in(app.test_client(), "owner@marie2027.test").status_code == 401
    assert sign_in(app.test_client(), "owner@marie2027.test", new).status_code == 302


# --- CSRF ----------------------------------------------------------------------------------
def test_a_post_without_or_with_a_wrong_token_is_refused(app, campaign):
    client = console(app, "owner@marie2027.test", slug="demo")
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf_token(app.test_client())}):
        response = client.post("/admin/c/demo/team/invite",
                               data={**data, "email": "x@marie2027.test", "role": "viewer"})
        assert response.status_code == 400
    with app.app_context():
        assert db.session().scalars(select(Invitation)).all() == []


# --- invitations ---------------------------------------------------------------------------
def _invitation_link(app, smtp_server) -> str:
    with app.app_context():
        outbox.deliver_due(app)
    body = smtp_server.messages[-1].get_body(("plain",)).get_content()
    return re.search(r"http://consent.test(/admin/invitation/\S+)", body).group(1)


def test_an_owner_invites_a_new_person_whose_link_works_once(app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    owner = console(app, "owner@marie2027.test", slug="demo")
    response = post(owner, "/admin/c/demo/team/invite",
                    {"email": "Volunteer@Marie2027.test", "role": "viewer"})
    assert response.status_code == 302
    link = _invitation_link(app, smtp_server)
    assert smtp_server.messages[-1]["To"] == "volunteer@marie2027.test"
    guest = app.test_client()
    token = csrf_token(guest, link)
    assert guest.post(link, data={"csrf_token": token, "password": PASSWORD,
                                  "confirm": PASSWORD}).status_code == 302
    assert guest.get("/admin/c/demo/").status_code == 200
    with app.app_context():
        member = db.session().scalars(select(Membership).join(AdminUser).where(
            AdminUser.email == "volunteer@marie2027.test")).one()
        assert member.role == "viewer"
    assert app.test_client().get(link).status_code == 400
    assert _audit(app, "invitation.send") and _audit(app, "invitation.accept")


def test_an_invitation_for_someone_else_or_expired_is_refused(app, campaign, smtp_server):
    app.config["MAIL_URL"] = smtp_server.url
    owner = console(app, "owner@marie2027.test", slug="demo")
    post(owner, "/admin/c/demo/team/invite", {"email": "guest@marie2027.test", "role": "editor"})
    link = _invitation_link(app, smtp_server)
    # The owner, signed in as someone else, cannot spend it.
    assert owner.get(link).status_code == 403
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(Invitation).values(
                expires_at=utcnow() - timedelta(seconds=1)))
    assert app.test_client().get(link).status_code == 400


def test_a_viewer_cannot_invite_and_the_last_owner_stays(app, campaign):
    viewer = console(app, "viewer@marie2027.test", slug="demo", role="viewer")
    assert post(viewer, "/admin/c/demo/team/invite",
                {"email": "x@marie2027.test", "role": "owner"}).status_code == 403
    owner = console(app, "owner@marie2027.test", slug="demo")
    with app.app_context():
        mine = db.session().scalars(select(Membership).join(AdminUser).where(
            AdminUser.email == "owner@marie2027.test")).one()
    post(owner, f"/admin/c/demo/team/{mine.id}/role", {"role": "viewer"})
    with app.app_context():
        assert db.session().get(Membership, mine.id).role == "owner"


# --- the audit log -------------------------------------------------------------------------
def test_the_audit_log_cannot_be_changed_or_deleted(app, campaign):
    console(app, "owner@marie2027.test", slug="demo")
    with app.app_context():
        engine = db.engine()
        for statement in ("UPDATE admin_audit_log SET action = 'nothing'",
                          "DELETE FROM admin_audit_log"):
            with pytest.raises(DBAPIError):
                with engine.begin() as connection:
                    connection.execute(text(statement))
        assert db.session().scalars(select(AuditEntry)).all()


def test_the_audit_log_page_shows_who_did_what(app, campaign):
    owner = console(app, "owner@marie2027.test", slug="demo")
    post(owner, "/admin/c/demo/team/invite", {"email": "x@marie2027.test", "role": "viewer"})
    page = owner.get("/admin/c/demo/audit").get_data(as_text=True)
    assert "invitation.send" in page and "owner@marie2027.test" in page
