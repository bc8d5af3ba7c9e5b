"""Helpers of the console's tests: accounts made through the domain, and a test client signed
in through the real sign-in form (CSRF token, password, second factor when it is on)."""
from __future__ import annotations

import re

from sqlalchemy import select

from consent_widget import accounts, db
from consent_widget.models import Campaign

PASSWORD = "a long enough passphrase"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(app, email: str, *, slug: str | None = None, role: str = "owner",
              operator: bool = False, password: str | None = PASSWORD) -> str:
    """Create (or reuse) the account ``email``, with ``role`` in campaign ``slug``."""
    with app.app_context():
        with db.transaction() as session:
            user = accounts.user_by_email(session, email) or accounts.create_user(
                session, email, operator=operator)
            if password:
                accounts.set_password(user, password, 12)
            if slug:
                campaign = session.scalars(select(Campaign).where(Campaign.slug == slug)).one()
                accounts.grant(session, user, campaign, role)
    return email


def csrf_token(client, path: str = "/admin/login") -> str:
    """The CSRF token of the client's console session, read from a page's form."""
    page = client.get(path)
    match = _TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD, *, code: str | None = None):
    """Sign ``client`` in through the form; returns the last response."""
    response = client.post("/admin/login", data={"csrf_token": csrf_token(client),
                                                 "email": email, "password": password})
    if code is not None:
        token = csrf_token(client, "/admin/login/second-factor")
        response = client.post("/admin/login/second-factor",
                               data={"csrf_token": token, "code": code})
    return response


def console(app, email: str, **user_options):
    """A test client signed in as a new account ``email`` (see :func:`make_user`)."""
    make_user(app, email, **user_options)
    client = app.test_client()
    response = sign_in(client, email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def post(client, path: str, data: dict | None = None, **kwargs):
    """POST a console form with the session's CSRF token."""
    token = csrf_token(client, "/admin/account")
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)
