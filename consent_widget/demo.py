"""The local demo behind ``make run``: a demo campaign, its owner's console account and a
platform client, the app, a host page on another origin that embeds the widget, and a page
listing the development outbox."""
from __future__ import annotations

import email
import email.policy
import ipaddress
import json
import os
import threading
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, render_template, send_from_directory
from werkzeug.serving import make_server

from . import (accounts, audit, campaigns, db, embed, keys, lifecycle, mail, oauth, outbox,
               webhooks)

DEMO_SLUG = "demo"
#: The demo campaign's owner in the console. A password everyone can read: the account is
#: made only by ``demo setup``, and only for a service on a loopback address.
DEMO_OWNER = "owner@example.org"
DEMO_PASSWORD = "demo-console-passphrase"
#: The demo CRM (examples/platform) beside the service: the platform side of the loop.
CRM_PORT = 5002
_CRM_SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "platform", "crm.py")
dev_bp = Blueprint("dev", __name__)


def setup(app, host_port: int = 5001) -> dict:
    """Create the demo campaign, its owner's console account, a platform client and a signing
    key unless they exist; let the demo host page on ``host_port`` frame the widget."""
    host_origins = [f"http://127.0.0.1:{host_port}", f"http://localhost:{host_port}"]
    credentials_file = os.path.join(app.instance_path, "demo-client.json")
    with db.transaction() as session:
        keys.active_key(session)
        campaign = campaigns.by_slug(session, DEMO_SLUG)
        if campaign is None:
            campaign = campaigns.create_campaign(
                session, DEMO_SLUG, name="Marie Exemple 2027",
                controller="Association de financement Marie Exemple 2027",
                contact_email="dpo@example.org", policy_url="https://example.org/privacy",
                origins=host_origins, locale="fr", controller_address="1 rue de l'Exemple, Paris")
        else:
            campaign.origins = list(dict.fromkeys([*campaign.origins, *host_origins]))
        if not os.path.exists(credentials_file):
            client, secret = oauth.create_client(session, campaign, name="demo CRM")
            os.makedirs(app.instance_path, exist_ok=True)
            with open(credentials_file, "w", encoding="utf-8") as fh:
                json.dump({"client_id": client.client_id, "client_secret": secret}, fh)
        _demo_owner(app, session, campaign)
    with open(credentials_file, encoding="utf-8") as fh:
        credentials = json.load(fh)
    if "webhook_secret" not in credentials:
        with db.transaction() as session:
            endpoint = webhooks.add_endpoint(session, campaigns.by_slug(session, DEMO_SLUG),
                                             f"http://127.0.0.1:{CRM_PORT}/webhooks/consent")
        credentials["webhook_secret"] = endpoint.secret
        with open(credentials_file, "w", encoding="utf-8") as fh:
            json.dump(credentials, fh)
    return {**embed.describe(campaign, app.config["BASE_URL"]), **credentials,
            "console": console_login(app)}


def _on_loopback(app) -> bool:
    host = urlsplit(app.config["BASE_URL"]).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _demo_owner(app, session, campaign) -> None:
    """Give the demo campaign its owner, with the demo password, unless the account exists
    (a password changed since is kept); nothing when the service is not on loopback."""
    if not _on_loopback(app):
        return
    user = accounts.user_by_email(session, DEMO_OWNER)
    if user is None:
        user = accounts.create_user(session, DEMO_OWNER)
        accounts.set_password(user, DEMO_PASSWORD, app.config["ADMIN_PASSWORD_MIN_LENGTH"])
        audit.record(session, "account.create", campaign=campaign, target=user.email,
                     detail={"operator": False, "role": "owner", "via": "demo setup"})
    if accounts.membership(session, user, campaign) is None:
        accounts.grant(session, user, campaign, "owner")


def console_login(app) -> dict:
    """Where to sign in to the console, and the demo owner's address and password (the
    password is None when the account has another one now, or there is no demo owner)."""
    login_url = app.config["BASE_URL"].rstrip("/") + "/admin/login"
    with db.transaction() as session:
        user = accounts.user_by_email(session, DEMO_OWNER) if _on_loopback(app) else None
        works = user is not None and accounts.check_password(user, DEMO_PASSWORD)
    return {"login_url": login_url, "email": user.email if user else None,
            "password": DEMO_PASSWORD if works else None}


def _console_line(login: dict) -> str:
    if login["password"]:
        return (f"{login['login_url']} — demo owner: {login['email']} / "
                f"{login['password']}")
    if login["email"]:
        return f"{login['login_url']} — demo owner: {login['email']} (password changed)"
    return (f"{login['login_url']} — create an account with "
            f"`consent-widget admin create EMAIL --operator`")


def _outbox_dir() -> str:
    transport = mail.transport_from_url(current_app.config["MAIL_URL"])
    if not isinstance(transport, mail.FileTransport):
        abort(404, description="the development outbox exists only with a file:// MAIL_URL")
    return transport.directory


@dev_bp.get("/dev/outbox")
def outbox_index():
    """The emails written to the file outbox, newest first, with their links."""
    folder = _outbox_dir()
    names = sorted((n for n in os.listdir(folder) if n.endswith(".eml")) if os.path.isdir(folder)
                   else [], key=lambda n: os.path.getmtime(os.path.join(folder, n)), reverse=True)
    messages = []
    for name in names[:50]:
        with open(os.path.join(folder, name), "rb") as fh:
            message = email.message_from_binary_file(fh, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        messages.append({"name": name, "subject": message["Subject"], "to": message["To"],
                         "date": message["Date"], "text": body.get_content() if body else ""})
    return render_template("dev/outbox.html", messages=messages)


@dev_bp.get("/dev/outbox/<name>")
def outbox_message(name: str):
    """One raw message."""
    return send_from_directory(_outbox_dir(), name, mimetype="text/plain")


def _host_app(widget_base: str, slug: str) -> Flask:
    host = Flask("consent_widget_demo_host", template_folder=current_app.template_folder)

    @host.get("/")
    def page():
        return render_template("dev/host.html", base=widget_base, slug=slug)

    return host


def _start_crm(app, base: str):
    """Serve the demo CRM of ``examples/platform`` in a thread, when this is a checkout."""
    if not os.path.exists(_CRM_SOURCE):
        return None
    import importlib.util
    spec = importlib.util.spec_from_file_location("demo_crm", _CRM_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(os.path.join(app.instance_path, "demo-client.json"), encoding="utf-8") as fh:
        credentials = json.load(fh)
    from .client import ConsentClient
    consent = ConsentClient(base, credentials["client_id"], credentials["client_secret"])
    crm = module.create_crm(os.path.join(app.instance_path, "demo-crm.sqlite3"), consent,
                            credentials["webhook_secret"])
    server = make_server("127.0.0.1", CRM_PORT, crm, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def banner(app, host_port: int) -> str:
    """What ``demo serve`` prints at start: the console first, then the demo's other URLs."""
    base = app.config["BASE_URL"].rstrip("/")
    return f"""
consent_widget is running.
  Console:            {_console_line(console_login(app))}
  widget:             {base}/w/{DEMO_SLUG}
  embedded elsewhere: http://127.0.0.1:{host_port}/   (a host page on another origin)
  emails sent:        {base}/dev/outbox   (click the confirmation link there)
  receipts' keys:     {base}/.well-known/jwks.json
  platform client:    instance/demo-client.json   (see the README for curl examples)
  demo CRM:           http://127.0.0.1:{CRM_PORT}/   (matches only with consent; purges on withdrawal)
Press Ctrl+C to stop.
"""


def serve(app, *, port: int, host_port: int) -> None:
    """Run the app, the outbox worker and the demo host page until interrupted."""
    base = app.config["BASE_URL"].rstrip("/")
    app.register_blueprint(dev_bp)
    if app.config["DEV_WORKER"]:
        outbox.start_background_worker(app, jobs=lifecycle.run_jobs)
    host_server = make_server("127.0.0.1", host_port, _host_app(base, DEMO_SLUG), threaded=True)
    threading.Thread(target=host_server.serve_forever, daemon=True).start()
    crm_server = _start_crm(app, base)
    print(banner(app, host_port), flush=True)
    server = make_server("127.0.0.1", port, app, threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host_server.shutdown()
        if crm_server is not None:
            crm_server.shutdown()
