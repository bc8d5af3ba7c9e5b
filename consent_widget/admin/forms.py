"""The console's forms: WTForms with a CSRF token kept in the console's session.

Every console form derives from :class:`ConsoleForm`; the blueprint checks the token of every
POST before any view runs (see ``admin/__init__.py``), and each form checks it again.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app, session
from flask_babel import lazy_gettext as _l
from wtforms import EmailField, Form, PasswordField, SelectField, StringField
from wtforms.csrf.session import SessionCSRF
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length

from ..accounts import MAX_PASSWORD_LENGTH
from ..models import ROLES


class _Meta:
    csrf = True
    csrf_class = SessionCSRF
    # A page left open over a working day still posts.
    csrf_time_limit = timedelta(hours=12)

    @property
    def csrf_secret(self):
        secret = current_app.config["SECRET_KEY"]
        return secret.encode("utf-8") if isinstance(secret, str) else secret


class CsrfForm(Form):
    """Only the CSRF token: the form of a button that changes something."""

    Meta = _Meta

    def __init__(self, formdata=None, **kwargs):
        # The token lives in the console's session, whichever form asks for it.
        super().__init__(formdata, meta={"csrf_context": session, **kwargs.pop("meta", {})},
                         **kwargs)


class ConsoleForm(CsrfForm):
    """Base of every console form."""


class LoginForm(ConsoleForm):
    """Email and password."""

    email = EmailField(_l("Email address"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(),
                                                         Length(max=MAX_PASSWORD_LENGTH)])


class SecondFactorForm(ConsoleForm):
    """A code from the authenticator app, or a recovery code."""

    code = StringField(_l("Code from your authenticator app, or a recovery code"),
                       validators=[DataRequired(), Length(max=32)])


class NewPasswordForm(ConsoleForm):
    """A new password, typed twice."""

    password = PasswordField(_l("New password"), validators=[DataRequired(),
                                                             Length(max=MAX_PASSWORD_LENGTH)])
    confirm = PasswordField(_l("The same password again"), validators=[
        DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])


class ForgotPasswordForm(ConsoleForm):
    """The address to send a reset link to."""

    email = EmailField(_l("Email address"), validators=[DataRequired(), Email(),
                                                        Length(max=320)])


class EnableTotpForm(ConsoleForm):
    """The first code of a newly added authenticator."""

    secret = StringField(validators=[DataRequired(), Length(min=16, max=64)])
    code = StringField(_l("The 6-digit code your app shows"),
                       validators=[DataRequired(), Length(max=16)])


class InviteForm(ConsoleForm):
    """Whom to invite, and as what."""

    email = EmailField(_l("Email address"), validators=[DataRequired(), Email(),
                                                        Length(max=320)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r) for r in ROLES], default="viewer")
