"""Webhooks cannot be turned against the server's own network: loopback, private, link-local
and reserved destinations are refused when an endpoint is added and at every delivery, and the
connection goes to the address that was checked (DNS rebinding cannot switch it)."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from consent_widget import db, destinations, outbox, webhooks
from consent_widget.cli import main
from consent_widget.models import OutboxMessage, WebhookEndpoint

from helpers import give
from webhook_receiver import Receiver

REAL_GETADDRINFO = socket.getaddrinfo


def answers(mapping: dict[str, str]):
    """A resolver (DNS is a third party here) answering ``mapping``'s names, others as usual."""
    def getaddrinfo(host, port, *args, **kwargs):
        if host in mapping:
            family = socket.AF_INET6 if ":" in mapping[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (mapping[host], port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)
    return getaddrinfo


@pytest.fixture
def guarded(app):
    """The app with the protection on, as in production."""
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    return app


@pytest.fixture
def receiver():
    served = Receiver()
    served.start()
    yield served
    served.stop()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/hook", "http://0.0.0.0/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://192.168.1.10/hook", "http://100.64.0.1/hook", "http://224.0.0.1/hook",
    "http://2130706433/hook", "http://localhost/hook", "https://[fe80::1]/hook",
])
def test_adding_an_endpoint_to_a_non_public_address_is_refused(guarded, runner, campaign, url):
    result = runner.invoke(main, ["webhook", "add", "demo", url])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "public" in result.output or "resolve" in result.output
    with guarded.app_context():
        assert db.session().scalars(select(WebhookEndpoint)).all() == []


def test_a_name_resolving_to_loopback_is_refused(guarded, runner, campaign, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "127.0.0.1"}))
    result = runner.invoke(main, ["webhook", "add", "demo", "https://crm.example.org/hook"])
    assert result.exit_code != 0 and "127.0.0.1" in result.output


def test_a_public_name_is_accepted(guarded, runner, campaign, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "93.184.215.14"}))
    result = runner.invoke(main, ["webhook", "add", "demo", "https://crm.example.org/hook"])
    assert result.exit_code == 0, result.output


def test_a_name_rebound_to_loopback_after_it_was_added_is_never_posted_to(
        guarded, campaign, receiver, monkeypatch):
    # Added while the name answered a public address...
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "93.184.215.14"}))
    with guarded.app_context():
        with db.transaction() as session:
            from consent_widget.campaigns import by_slug
            webhooks.add_endpoint(session, by_slug(session, "demo"),
                                  f"http://crm.example.org:{receiver.port}/hooks/consent")
    # ...then the name points at the server's loopback, where something listens.
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "127.0.0.1"}))
    give(guarded, "demo", "ana@marie2027.test", newsletter=True)
    with guarded.app_context():
        report = outbox.deliver_due(guarded)
        rows = db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook")).all()
    assert rows and report["dead"] == len(rows)
    assert receiver.requests == []
    assert all(row.status == "dead" and "destination refused" in row.last_error for row in rows)


def test_the_connection_goes_to_the_checked_address_with_the_original_host(
        app, campaign, receiver, monkeypatch):
    """With the protection lifted (the demo), the pinned connection still connects to the
    address it resolved, and the request names the URL's host."""
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "127.0.0.1"}))
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["host"] = self.headers["Host"]
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        status = destinations.post(f"http://crm.example.org:{port}/x", b"{}", {},
                                   timeout=5, allow_private=True)
    finally:
        server.shutdown()
    assert status == 204 and seen["host"] == f"crm.example.org:{port}"


def test_a_redirect_to_loopback_is_a_failure_and_never_followed(app, campaign, runner):
    followed = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path == "/internal":
                followed.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}"
                                         "/internal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert runner.invoke(main, ["webhook", "add", "demo", url]).exit_code == 0
        give(app, "demo", "ana@marie2027.test", newsletter=True)
        with app.app_context():
            report = outbox.deliver_due(app)
            row = db.session().scalars(select(OutboxMessage).where(
                OutboxMessage.kind == "webhook")).first()
    finally:
        server.shutdown()
    assert row.status == "pending"
    assert row.last_status == 302 and "302" in row.last_error
    assert followed == []


def test_the_answer_code_is_kept_on_the_delivery(app, campaign, runner):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert runner.invoke(main, ["webhook", "add", "demo", url]).exit_code == 0
        give(app, "demo", "ana@marie2027.test", newsletter=True)
        with app.app_context():
            outbox.deliver_due(app)
            rows = db.session().scalars(select(OutboxMessage).where(
                OutboxMessage.kind == "webhook")).all()
    finally:
        server.shutdown()
    assert rows and {row.last_status for row in rows} == {503}
