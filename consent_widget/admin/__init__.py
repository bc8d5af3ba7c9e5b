"""The campaign console: a server-rendered part of the app under ``/admin`` for a campaign's
team (owners, editors, viewers) and the service's operator.

This module wires the console together: its blueprint, its session cookie (the console is the
only part of the service that sets one), sign-in with Flask-Login, the CSRF check every form
passes, the headers of its pages, and :func:`route`, which every view is declared with so
that its access rule is on record (the security tests walk the URL map and try each rule).
Each page group lives in a module of its own and registers its views on :data:`bp`.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from functools import lru_cache, wraps
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, g, redirect, render_template, request,
                   session, url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user
from flask_login.utils import _user_context_processor
from markupsafe import Markup

from .. import accounts, audit, db
from ..i18n import LOCALES
from ..models import EDITOR, OWNER, ROLES, VIEWER, AdminUser, Campaign
from .forms import CsrfForm

bp = Blueprint("admin", __name__, url_prefix="/admin")
PREFIX = "/admin"

#: Access kinds a view is declared with: anyone, any signed-in person, the operator, or a
#: role in the campaign named by the URL's ``slug`` (one role to read, one to change).
PUBLIC, SIGNED_IN, OPERATOR, CAMPAIGN = "public", "signed-in", "operator", "campaign"
_RANK = {VIEWER: 0, EDITOR: 1, OWNER: 2}
_READ_METHODS = ("GET", "HEAD")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, for the console's paths only.

    The widget, the email links and the API stay cookie-free: a request anywhere else gets
    Flask's null session, which refuses writes, and no Set-Cookie.
    """

    def open_session(self, app, request):
        """The console's session under ``/admin``; none elsewhere."""
        if not _is_console_path(request.path):
            return None
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        """Save only the console's session."""
        if not _is_console_path(request.path):
            return None
        return super().save_session(app, session, response)


def _is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ConsoleUser(UserMixin):
    """The signed-in person, as Flask-Login sees them; ``row`` is their account."""

    def __init__(self, row: AdminUser):
        self.row = row

    def get_id(self) -> str:
        """The id kept in the session: the account and its epoch, so that bumping the epoch
        (new password, second factor changed) ends every session of the account."""
        return f"{self.row.id}:{self.row.session_epoch}"

    @property
    def email(self) -> str:
        """The account's address."""
        return self.row.email

    @property
    def is_operator(self) -> bool:
        """Whether the person runs the service (creates campaigns and their first owners)."""
        return self.row.is_operator


login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.session_protection = "basic"


@login_manager.user_loader
def _load_user(user_id: str):
    account, _, epoch = (user_id or "").partition(":")
    if not (account.isdigit() and epoch.isdigit()):
        return None
    row = db.session().get(AdminUser, int(account))
    if row is None or row.session_epoch != int(epoch) or not row.password_hash:
        return None
    return ConsoleUser(row)


@login_manager.unauthorized_handler
def _unauthorized():
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, never another site."""
    if not target:
        return url_for("admin.index")
    parts = urlsplit(target)
    # "//evil.example" and "\\evil.example" are other hosts to a browser; so is any scheme.
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or not _is_console_path(parts.path):
        return url_for("admin.index")
    return target


# --- declaring views -----------------------------------------------------------------------
def route(rule: str, *, access: str, read: str = VIEWER, write: str = OWNER, **options):
    """Register a console view with its access rule.

    ``access`` is :data:`PUBLIC`, :data:`SIGNED_IN`, :data:`OPERATOR` or :data:`CAMPAIGN`.
    For a campaign view the rule starts with ``/c/<slug>``; ``read`` is the least role that may
    GET it and ``write`` the least that may POST to it. A person without a role in the
    campaign gets 404, as if it did not exist; one whose role is too low gets 403.
    """
    if access == CAMPAIGN and not rule.startswith("/c/<slug>"):
        raise ValueError(f"a campaign view's rule starts with /c/<slug>: {rule}")
    if read not in ROLES or write not in ROLES:
        raise ValueError("read and write are roles")

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if access != PUBLIC and not current_user.is_authenticated:
                return login_manager.unauthorized()
            if access == OPERATOR and not current_user.is_operator:
                abort(403)
            if access == CAMPAIGN:
                _enter_campaign(kwargs.pop("slug"), read, write)
            return view(*args, **kwargs)

        guarded.admin_access = {"access": access, "read": read, "write": write}
        bp.add_url_rule(rule, view_func=guarded, **options)
        return guarded

    return decorate


def _enter_campaign(slug: str, read: str, write: str) -> None:
    campaign = db.session().query(Campaign).filter_by(slug=slug).first()
    member = accounts.membership(db.session(), current_user.row, campaign) if campaign else None
    if member is None:
        abort(404)
    needed = read if request.method in _READ_METHODS else write
    if _RANK[member.role] < _RANK[needed]:
        abort(403)
    g.campaign, g.membership = campaign, member
    g.campaign_locale = campaign.locale
    session["campaign"] = campaign.slug


def can(role: str) -> bool:
    """Whether the signed-in person's role in the current campaign is at least ``role``."""
    member = g.get("membership")
    return member is not None and _RANK[member.role] >= _RANK[role]


def log(action: str, *, target: str = "", detail: dict | None = None,
        campaign: Campaign | None = None) -> None:
    """Record an action of the signed-in person in the audit log, in the current transaction."""
    user = current_user.row if current_user.is_authenticated else None
    audit.record(db.session(), action, user=user, campaign=campaign or g.get("campaign"),
                 target=target, detail=detail, address=request.remote_addr or "")


def render(template: str, **context):
    """Render a console page."""
    return render_template(f"admin/{template}", **context)


# --- every console request -----------------------------------------------------------------
@bp.before_request
def _before():
    lang = request.args.get("lang")
    if lang in LOCALES:
        session["lang"] = lang
    if session.get("lang") in LOCALES:
        g.locale = session["lang"]
    if request.method not in _READ_METHODS and request.method != "OPTIONS":
        # Every change is a form post, and every form carries the token: checked here, once,
        # so that no view can forget it.
        form = CsrfForm(request.form)
        if not form.validate():
            abort(400, description="This form has expired or did not come from the console. "
                                   "Go back, reload the page and try again.")


@bp.after_request
def _headers(response):
    # A view may set a stricter policy of its own (the charts' SVG documents).
    response.headers.setdefault("Content-Security-Policy", (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
        "frame-ancestors 'none'"))
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Set-password and invitation links carry their token in the path.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _csrf_field() -> Markup:
    form = CsrfForm()
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(
        form.csrf_token.current_token)


#: The campaign's sections in the navigation, in order: (endpoint, label). A section shows
#: once its module has registered the endpoint.
SECTIONS = (("admin.dashboard", _l("Dashboard")), ("admin.supporters", _l("Supporters")),
            ("admin.texts", _l("Consent texts")), ("admin.settings", _l("Settings and look")),
            ("admin.embed", _l("Embed")), ("admin.platforms", _l("Platforms")),
            ("admin.proof", _l("Proof")), ("admin.compliance", _l("Compliance summary")),
            ("admin.team", _l("Team")),
            ("admin.audit_log", _l("Audit log")))
_ROLE_LABELS = {OWNER: _l("owner"), EDITOR: _l("editor"), VIEWER: _l("viewer")}


def role_label(role: str) -> str:
    """A role's name in the page's language."""
    return str(_ROLE_LABELS.get(role, role))


def _sections():
    return [(endpoint, label) for endpoint, label in SECTIONS
            if endpoint in current_app.view_functions]


def _context():
    member_of = []
    if current_user.is_authenticated:
        member_of = accounts.memberships(db.session(), current_user.row)
    return {"current_campaign": g.get("campaign"),
            "membership": g.get("membership"), "member_of": member_of, "can": can,
            "role_label": role_label, "console_sections": _sections,
            "admin_asset": admin_asset, "OWNER": OWNER, "EDITOR": EDITOR, "VIEWER": VIEWER}


STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "static", "admin")


@lru_cache(maxsize=32)
def _digest(path: str, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:12]


def admin_asset(filename: str) -> str:
    """The URL of a console asset, versioned by its content."""
    path = os.path.join(STATIC_DIR, filename)
    return url_for("admin.static", filename=filename, v=_digest(path, os.stat(path).st_mtime_ns))


bp.context_processor(_context)
# Flask-Login's, for the console's pages only (see init_app).
bp.context_processor(_user_context_processor)
bp.after_request(login_manager._update_remember_cookie)
# A global, not a context variable: the form macros imported by the pages need it too.
bp.add_app_template_global(_csrf_field, "csrf_field")


def init_app(app) -> None:
    """Mount the console: its session cookie, sign-in and every page group."""
    app.session_interface = ConsoleSessionInterface()
    app.config.update(SESSION_COOKIE_PATH=PREFIX, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="consent_console",
                      SESSION_COOKIE_SECURE=not app.debug)
    login_manager.init_app(app)
    # Flask-Login works on every request of the app: it finds the signed-in user for every
    # template rendered and looks for a remember-me cookie in every answer. Only the console
    # has users, templates that show them and a session to remember them in, so both are
    # moved to its pages, and a widget or link page does neither.
    app.template_context_processors[None].remove(_user_context_processor)
    app.after_request_funcs[None].remove(login_manager._update_remember_cookie)
    # Each page group registers its views on bp when imported.
    from . import (auth, charts, dashboard, embed, home, operator, platforms,  # noqa: F401
                   proof, settings, supporters, team, texts)
    app.register_blueprint(bp)


def new_session_id() -> str:
    """A fresh random id for a signed-in session (fixation: never the one from before)."""
    return secrets.token_urlsafe(24)
