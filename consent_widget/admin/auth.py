"""Signing in and out, passwords, the second factor, and accepting an invitation."""
from __future__ import annotations

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_user, logout_user

from .. import accounts, db, mail
from ..models import AdminUser, Campaign, utcnow
from . import PUBLIC, SIGNED_IN, ConsoleUser, log, new_session_id, render, route, safe_next
from .forms import (EnableTotpForm, ForgotPasswordForm, LoginForm, NewPasswordForm,
                    SecondFactorForm)
from .throttle import too_many

#: Where a half-done sign-in waits for its second factor: [account id, epoch, next].
_PENDING = "second_factor"


def _secret():
    return current_app.config["SECRET_KEY"]


def _fresh_session() -> None:
    """Drop everything the session holds but the language chosen: a new session must not
    inherit an id or an account, and the next page must stay in the person's language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def _complete_login(user: AdminUser, next_url: str | None):
    """Start a new session for ``user``: the old one (and any id planted in it) is dropped."""
    _fresh_session()
    session["sid"] = new_session_id()
    login_user(ConsoleUser(user))
    user.last_login_at = utcnow()
    log("login", campaign=None)
    db.session().commit()
    return redirect(safe_next(next_url))


@route("/login", access=PUBLIC, methods=["GET", "POST"])
def login():
    """The sign-in page: email and password, then the second factor when it is on."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(request.form)
    error = None
    if request.method == "POST" and form.validate():
        email = form.email.data.strip().lower()
        if too_many("login-ip", request.remote_addr or "") or too_many("login-account", email):
            return render("login.html", form=form, limited=True), 429
        user = accounts.user_by_email(db.session(), email)
        if accounts.check_password(user, form.password.data):
            if user.totp_secret:
                _fresh_session()
                session[_PENDING] = [user.id, user.session_epoch, request.args.get("next")]
                return redirect(url_for("admin.second_factor"))
            return _complete_login(user, request.args.get("next"))
        if user is not None:
            log("login.failed", campaign=None, detail={"account": user.email})
            db.session().commit()
        error = gettext("This email address and password do not match an account.")
    return render("login.html", form=form, error=error), 200 if error is None else 401


@route("/login/second-factor", access=PUBLIC, methods=["GET", "POST"])
def second_factor():
    """The second step of signing in, for accounts with an authenticator app."""
    pending = session.get(_PENDING)
    if not (isinstance(pending, list) and len(pending) == 3):
        return redirect(url_for("admin.login"))
    user = db.session().get(AdminUser, pending[0])
    if user is None or user.session_epoch != pending[1] or not user.totp_secret:
        session.pop(_PENDING, None)
        return redirect(url_for("admin.login"))
    form = SecondFactorForm(request.form)
    error = None
    if request.method == "POST" and form.validate():
        if too_many("login-account", user.email):
            return render("second_factor.html", form=form, limited=True), 429
        if accounts.check_second_factor(user, form.code.data):
            return _complete_login(user, pending[2])
        db.session().rollback()
        error = gettext("This code is not valid, or was used already.")
    return render("second_factor.html", form=form, error=error), 200 if error is None else 401


@route("/logout", access=SIGNED_IN, methods=["POST"])
def logout():
    """Sign out everywhere: the account's epoch moves on, so no copy of any of its session
    cookies (a shared computer, a stolen cookie) is signed in any more."""
    current_user.row.session_epoch += 1
    log("logout", campaign=None)
    db.session().commit()
    logout_user()
    _fresh_session()
    return redirect(url_for("admin.login"))


@route("/password/set/<token>", access=PUBLIC, methods=["GET", "POST"])
def set_password(token):
    """Choose a password from a set-password or reset link (it works once)."""
    try:
        user = accounts.user_of_set_password_token(db.session(), _secret(), token,
                                                   current_app.config["ADMIN_LINK_MAX_AGE"])
    except accounts.AccountError as exc:
        return render("message.html", title=gettext("This link cannot be used"),
                      message=str(exc)), 400
    form = NewPasswordForm(request.form)
    error = None
    if request.method == "POST" and form.validate():
        try:
            accounts.set_password(user, form.password.data,
                                  current_app.config["ADMIN_PASSWORD_MIN_LENGTH"])
        except accounts.AccountError as exc:
            error = str(exc)
        else:
            log("password.set", campaign=None, target=user.email)
            db.session().commit()
            if user.totp_secret:
                # The link proves the mailbox, not the authenticator: sign in with both.
                return redirect(url_for("admin.login"))
            logout_user()
            return _complete_login(user, None)
    return render("set_password.html", form=form, error=error, email=user.email,
                  min_length=current_app.config["ADMIN_PASSWORD_MIN_LENGTH"]), \
        200 if error is None else 400


@route("/password/forgot", access=PUBLIC, methods=["GET", "POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether or not the account exists."""
    form = ForgotPasswordForm(request.form)
    if request.method == "POST" and form.validate():
        if too_many("login-ip", request.remote_addr or ""):
            return render("forgot_password.html", form=form, limited=True), 429
        user = accounts.user_by_email(db.session(), form.email.data)
        if user is not None:
            send_password_link(user)
            db.session().commit()
        return render("message.html", title=gettext("Check your email"), message=gettext(
            "If an account exists for this address, a link to choose a new password is on "
            "its way."))
    return render("forgot_password.html", form=form)


def send_password_link(user: AdminUser) -> str:
    """Queue an email with a set-password link for ``user``; returns the link."""
    url = password_url(user)
    mail.queue_console_email(db.session(), user.email, "console_password", g.get("locale", ""),
                             url=url, hours=current_app.config["ADMIN_LINK_MAX_AGE"] // 3600)
    return url


def password_url(user: AdminUser) -> str:
    """The absolute set-password link of ``user``, under the service's public URL."""
    token = accounts.set_password_token(_secret(), user)
    return current_app.config["BASE_URL"].rstrip("/") + url_for("admin.set_password",
                                                                token=token)


@route("/invitation/<token>", access=PUBLIC, methods=["GET", "POST"])
def accept_invitation(token):
    """Join a campaign from an invitation link: signed in as the invited address, or by
    choosing a password for a new account."""
    try:
        invitation = accounts.invitation_of_token(db.session(), _secret(), token)
    except accounts.AccountError as exc:
        return render("message.html", title=gettext("This invitation cannot be used"),
                      message=str(exc)), 400
    user = accounts.user_by_email(db.session(), invitation.email)
    if current_user.is_authenticated and current_user.row.email != invitation.email:
        return render("message.html", title=gettext("This invitation is for someone else"),
                      message=gettext("Sign out, then open the link again.")), 403
    form = NewPasswordForm(request.form)
    error = None
    if request.method == "POST":
        if user is not None and user.password_hash:
            if not current_user.is_authenticated:
                return redirect(url_for("admin.login", next=request.path))
            accounts.accept(db.session(), invitation, user)
        elif form.validate():
            if user is None:
                user = accounts.create_user(db.session(), invitation.email)
            try:
                accounts.set_password(user, form.password.data,
                                      current_app.config["ADMIN_PASSWORD_MIN_LENGTH"])
            except accounts.AccountError as exc:
                db.session().rollback()
                error = str(exc)
            else:
                accounts.accept(db.session(), invitation, user)
        else:
            error = gettext("Check the two passwords.")
        if error is None:
            audit_campaign = db.session().get(Campaign, invitation.campaign_id)
            log("invitation.accept", campaign=audit_campaign, target=invitation.public_id,
                detail={"email": invitation.email, "role": invitation.role})
            db.session().commit()
            if current_user.is_authenticated:
                return redirect(url_for("admin.dashboard", slug=audit_campaign.slug))
            return _complete_login(user, url_for("admin.dashboard", slug=audit_campaign.slug))
    return render("invitation.html", form=form, error=error, invitation=invitation,
                  has_account=user is not None and bool(user.password_hash),
                  min_length=current_app.config["ADMIN_PASSWORD_MIN_LENGTH"]), \
        200 if error is None else 400


@route("/account", access=SIGNED_IN, methods=["GET"])
def account():
    """The person's own account: second factor and password."""
    user = current_user.row
    secret = None if user.totp_secret else accounts.new_totp_secret()
    return render("account.html", user=user, form=EnableTotpForm(secret=secret),
                  secret=secret, uri=accounts.totp_uri(secret, user.email) if secret else None)


@route("/account/second-factor", access=SIGNED_IN, methods=["POST"])
def enable_second_factor():
    """Turn the second factor on with the first code of the app; show the recovery codes."""
    user = current_user.row
    form = EnableTotpForm(request.form)
    if user.totp_secret or not form.validate():
        abort(400)
    try:
        codes = accounts.enable_totp(user, form.secret.data.strip(), form.code.data)
    except accounts.AccountError as exc:
        return render("account.html", user=user, form=form, secret=form.secret.data,
                      uri=accounts.totp_uri(form.secret.data, user.email), error=str(exc)), 400
    log("second_factor.enable", campaign=None)
    db.session().commit()
    # The epoch moved on: this session continues under the new one, every other one ends.
    login_user(ConsoleUser(user))
    return render("recovery_codes.html", codes=codes)


@route("/account/second-factor/remove", access=SIGNED_IN, methods=["POST"])
def disable_second_factor():
    """Turn the second factor off."""
    user = current_user.row
    accounts.disable_totp(user)
    log("second_factor.disable", campaign=None)
    db.session().commit()
    login_user(ConsoleUser(user))
    return redirect(url_for("admin.account"))


@route("/account/password", access=SIGNED_IN, methods=["POST"])
def change_password():
    """Email oneself a link to choose a new password (proves the mailbox again)."""
    send_password_link(current_user.row)
    log("password.link", campaign=None)
    db.session().commit()
    return render("message.html", title=gettext("Check your email"), message=gettext(
        "A link to choose a new password is on its way to %(email)s.",
        email=current_user.row.email))
