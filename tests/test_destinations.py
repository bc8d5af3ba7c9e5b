"""Webhooks cannot be turned against the server's own network: loopback, private, link-local
and reserved destinations are refused when an endpoint is added and at every delivery, and the
connection goes to the address that was checked (DNS rebinding cannot switch it)."""
from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from contextlib import contextmanager
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


@contextmanager
def answering(status: int, location: str | None = None):
    """A real HTTP server on loopback answering every request with ``status`` (and a
    ``Location``, ``{port}`` filled in); yields its port and the (method, path, Host) of each
    request it got."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            seen.append((self.command, self.path, self.headers["Host"]))
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            if location:
                self.send_header("Location", location.format(port=self.server.server_address[1]))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _deliveries_to(app, runner, url: str) -> list[OutboxMessage]:
    """Register ``url``, make one signup, run the worker once: the webhook rows after it."""
    assert runner.invoke(main, ["webhook", "add", "demo", url]).exit_code == 0
    give(app, "demo", "ana@marie2027.test", newsletter=True)
    with app.app_context():
        outbox.deliver_due(app)
        return db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook")).all()


def test_the_connection_goes_to_the_checked_address_with_the_original_host(
        app, campaign, monkeypatch):
    """With the protection lifted (the demo), the pinned connection still connects to the
    address it resolved, and the request names the URL's host."""
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "127.0.0.1"}))
    with answering(204) as (port, seen):
        status = destinations.post(f"http://crm.example.org:{port}/x", b"{}", {},
                                   timeout=5, allow_private=True)
    assert status == 204 and seen == [("POST", "/x", f"crm.example.org:{port}")]


def test_a_redirect_to_loopback_is_a_failure_and_never_followed(app, campaign, runner):
    with answering(302, "http://127.0.0.1:{port}/internal") as (port, seen):
        rows = _deliveries_to(app, runner, f"http://127.0.0.1:{port}/hook")
    assert rows and all(row.status == "pending" for row in rows)
    assert {row.last_status for row in rows} == {302} and "302" in rows[0].last_error
    assert [path for _method, path, _host in seen] == ["/hook"] * len(rows)


def test_the_answer_code_is_kept_on_the_delivery(app, campaign, runner):
    with answering(503) as (port, _seen):
        rows = _deliveries_to(app, runner, f"http://127.0.0.1:{port}/hook")
    assert rows and {row.last_status for row in rows} == {503}


def answers_many(mapping: dict[str, list[str]], calls: list[str] | None = None):
    """As :func:`answers`, a name answering several addresses; the names asked go to
    ``calls``."""
    def getaddrinfo(host, port, *args, **kwargs):
        if calls is not None:
            calls.append(host)
        if host in mapping:
            return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM,
                     6, "", (address, port) if ":" not in address else (address, port, 0, 0))
                    for address in mapping[host]]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)
    return getaddrinfo


@pytest.mark.parametrize("address, reason", [
    ("fec0::1", "site-local"), ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("::ffff:10.1.2.3", "private"),
    ("255.255.255.255", "private"), ("fd00::1", "private"),
])
def test_ipv6_forms_of_refused_addresses_are_refused(address, reason):
    assert reason in destinations._refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14",
                                     "64:ff9b::808:808", "2002:5db8:d70e::1"])
def test_public_addresses_and_their_ipv6_forms_pass(address):
    assert destinations._refusal(ipaddress.ip_address(address)) is None


def test_a_name_with_one_private_address_among_public_ones_is_refused(guarded, runner, campaign,
                                                                     monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers_many(
        {"crm.example.org": ["93.184.215.14", "2606:4700::1111", "10.0.0.7"]}))
    result = runner.invoke(main, ["webhook", "add", "demo", "https://crm.example.org/hook"])
    assert result.exit_code == 1 and "10.0.0.7, a private address" in result.output
    with guarded.app_context():
        assert db.session().scalars(select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize("url", ["http://93.184.215.14/a b", "http://93.184.215.14/a\x7f"])
def test_urls_with_spaces_or_control_characters_are_refused(guarded, runner, campaign, url):
    result = runner.invoke(main, ["webhook", "add", "demo", url])
    assert result.exit_code == 1 and "spaces or control characters" in result.output


def test_the_name_is_resolved_once_per_attempt_and_the_next_address_tried(
        app, runner, campaign, receiver, monkeypatch):
    """crm.example.org has no address in the real DNS: reaching the receiver at all shows that
    nothing but the check resolved it. The receiver listens on 127.0.0.1 only, so 127.0.0.2,
    answered first, refuses the connection and the next checked address is used."""
    calls = []
    monkeypatch.setattr(socket, "getaddrinfo", answers_many(
        {"crm.example.org": ["127.0.0.2", "127.0.0.1"]}, calls))
    url = f"http://crm.example.org:{receiver.port}/hooks/consent"
    receiver.secret = json.loads(runner.invoke(main, ["webhook", "add", "demo", url]).stdout)[
        "secret"]
    give(app, "demo", "ana@marie2027.test", networks=["facebook"])
    calls.clear()
    with app.app_context():
        outbox.deliver_due(app)
        row = db.session().scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "webhook")).one()
    assert calls.count("crm.example.org") == 1
    assert (row.status, row.last_status) == ("sent", 200)
    [(_, headers)] = receiver.requests
    assert headers["host"] == f"crm.example.org:{receiver.port}" and len(receiver.processed) == 1


def test_a_test_send_to_a_rebound_name_reaches_nothing(guarded, runner, campaign, receiver,
                                                       monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "93.184.215.14"}))
    url = f"http://crm.example.org:{receiver.port}/hooks/consent"
    created = json.loads(runner.invoke(main, ["webhook", "add", "demo", url]).stdout)
    monkeypatch.setattr(socket, "getaddrinfo", answers({"crm.example.org": "127.0.0.1"}))
    result = runner.invoke(main, ["webhook", "test", "demo", created["id"]])
    assert result.exit_code == 1 and "127.0.0.1, a loopback address" in result.output
    assert receiver.requests == []


# --- TLS: SNI and the certificate are for the URL's name, not the address connected to -----
def _certificates(tmp_path):
    """A CA and a certificate for crm.example.org that it signed: (ca, cert, key) files."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.now(timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("crm.example.org"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("crm.example.org")]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """An HTTPS server on loopback whose certificate names crm.example.org, from a CA the
    default trust store is pointed at (``SSL_CERT_FILE``); it answers 204 and records the SNI
    name and ``Host`` of each request."""
    ca_file, cert_file, key_file = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    seen = {"sni": [], "host": []}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, server_name, ctx: seen["sni"].append(server_name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["host"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    class TLSServer(ThreadingHTTPServer):
        def get_request(self):
            sock, address = super().get_request()
            try:
                return context.wrap_socket(sock, server_side=True), address
            except OSError:  # a client refusing the certificate: what one test expects
                sock.close()
                raise

    server = TLSServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["port"] = server.server_address[1]
    yield seen
    server.shutdown()
    server.server_close()


def test_https_sends_sni_and_checks_the_certificate_for_the_urls_name(app, runner, campaign,
                                                                      tls_server, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers(
        {"crm.example.org": "127.0.0.1", "other.example.org": "127.0.0.1"}))
    port = tls_server["port"]
    good = json.loads(runner.invoke(main, ["webhook", "add", "demo",
                                           f"https://crm.example.org:{port}/h"]).stdout)
    wrong = json.loads(runner.invoke(main, ["webhook", "add", "demo",
                                            f"https://other.example.org:{port}/h"]).stdout)
    answer = runner.invoke(main, ["webhook", "test", "demo", good["id"]])
    assert answer.exit_code == 0 and json.loads(answer.stdout)["status"] == 204
    assert tls_server["sni"] == ["crm.example.org"]
    assert tls_server["host"] == [f"crm.example.org:{port}"]
    # The same address under another name: the certificate does not name it, nothing is sent.
    result = runner.invoke(main, ["webhook", "test", "demo", wrong["id"]])
    assert result.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in result.output
    assert tls_server["host"] == [f"crm.example.org:{port}"]
