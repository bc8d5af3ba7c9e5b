"""Structured logs: one JSON object per line with the request id, the id echoed to the client, and
never an email address, a token or a link, even when a message of another module quotes one."""
from __future__ import annotations

import base64
import json
import logging

import pytest
from sqlalchemy import select

from consent_widget import db, logs, outbox, urls
from consent_widget.cli import main
from consent_widget.models import Campaign, Signup, Subject
from helpers import sign_up, widget_form

EMAIL = "Ana.Secret@example.test"
FIELDS = {"time", "level", "message", "request_id", "method", "endpoint", "status", "duration"}


def lines(captured: str) -> list[dict]:
    """Each line of standard error parsed as JSON (every line must be JSON)."""
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_every_request_gets_an_id_that_is_echoed_and_logged(client, capsys):
    response = client.get("/healthz")
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32
    response = client.get("/w/nope", headers={"X-Request-ID": "edge-7f3a:42"})
    assert response.headers["X-Request-ID"] == "edge-7f3a:42"
    access = [entry for entry in lines(capsys.readouterr().err)
              if entry["logger"] == "consent_widget.access"]
    entry = next(entry for entry in access if entry["request_id"] == "edge-7f3a:42")
    assert FIELDS <= set(entry)
    assert (entry["method"], entry["endpoint"], entry["status"]) == ("GET", "widget.page", 404)
    assert isinstance(entry["duration"], float)
    assert entry["level"] == "INFO"


@pytest.mark.parametrize("incoming", [EMAIL, "a b", "x" * 129, "id;drop", ""])
def test_an_incoming_request_id_that_is_not_sane_is_replaced(client, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    echoed = response.headers["X-Request-ID"]
    assert echoed != incoming and len(echoed) == 32


def test_messages_quoting_emails_links_and_tokens_are_scrubbed(app, capsys):
    token = "eyJzIjoic2duX2FiYyJ9.ZmZm.c2lnbmF0dXJlLXZhbHVlLWhlcmU"
    with app.test_request_context("/"):
        logging.getLogger("consent_widget.outbox").warning(
            "refused %s: {'%s': (550, b'5.1.1 <%s> unknown')} see "
            "https://consent.test/w/demo/manage/%s and /w/demo/confirm/%s, Bearer %s, %s",
            "x", EMAIL, EMAIL.lower(), token, token, "b" * 43, "c" * 43)
    entry = lines(capsys.readouterr().err)[-1]
    message = entry["message"]
    assert "example.test" not in message.lower() and "@" not in message
    assert token not in message and "b" * 43 not in message and "c" * 43 not in message
    assert "https://" not in message and "[email]" in message and "[link]" in message


def test_a_whole_journey_logs_no_email_token_or_link(app_config, smtp_server, app, client,
                                                     campaign, capsys):
    app.config["MAIL_URL"] = smtp_server.url
    logging.getLogger(logs.LOGGER).setLevel(logging.DEBUG)
    try:
        secrets_seen = run_journey(app, client, smtp_server)
        captured = capsys.readouterr().err
    finally:
        logging.getLogger(logs.LOGGER).setLevel(app.config["LOG_LEVEL"])
    entries = lines(captured)
    assert {entry.get("endpoint") for entry in entries} >= {
        "widget.submit", "links.confirm", "links.manage", "oauth.issue_token", "api.check"}
    assert any(entry["level"] == "WARNING" for entry in entries)  # the refused delivery
    for secret in secrets_seen:
        assert secret.lower() not in captured.lower(), secret
    assert "@example.test" not in captured and "http://consent.test" not in captured


def run_journey(app, client, smtp_server) -> list[str]:
    """Sign up through the widget, confirm, manage, unsubscribe, check through the API and fail a
    delivery; return every secret the logs must not contain."""
    assert client.post("/w/demo", data=widget_form(client, EMAIL)).status_code == 200
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).one()
        confirm = urls.confirm_url(campaign, session.scalars(select(Signup)).one())
    assert client.post(confirm.removeprefix(app.config["BASE_URL"])).status_code == 200
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).one()
        subject = session.scalars(select(Subject)).one()
        manage = urls.manage_url(campaign, subject)
        unsubscribe = urls.unsubscribe_url(campaign, subject)
    base = app.config["BASE_URL"]
    assert client.get(manage.removeprefix(base)).status_code == 200
    assert client.post(unsubscribe.removeprefix(base)).status_code == 200
    credentials = json.loads(app.test_cli_runner().invoke(main, ["client", "create", "demo"]).stdout)
    basic = base64.b64encode(
        f"{credentials['client_id']}:{credentials['client_secret']}".encode()).decode()
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": "Basic " + basic}).json["access_token"]
    assert client.post("/api/v1/consents/check", json={"email": EMAIL, "purpose": "newsletter"},
                       headers={"Authorization": f"Bearer {token}"}).status_code == 200
    sign_up(app, "demo", "refused.person@example.test", newsletter=True)
    smtp_server.refused.add("refused.person@example.test")
    outbox.deliver_due(app)
    paths = [url.removeprefix(base) for url in (confirm, manage, unsubscribe)]
    return [EMAIL, "refused.person@example.test", token, credentials["client_secret"], basic,
            *paths, *(path.rsplit("/", 1)[1] for path in paths)]


def test_lines_written_by_many_threads_at_once_stay_whole(tmp_path, monkeypatch):
    # The handler takes no lock of its own: each line must still reach the file in one piece.
    import sys
    import threading
    handler = logs.StderrHandler()
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("consent_widget.test_threads")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    path = tmp_path / "stderr.log"
    with path.open("w", encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        start = threading.Barrier(8)

        def write(n):
            start.wait()
            for i in range(400):
                logger.info("thread %d line %d:%s", n, i, " word" * (n * 60 + 1))
        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    logger.removeHandler(handler)
    written = lines(path.read_text(encoding="utf-8"))
    assert len(written) == 8 * 400
    assert sorted(entry["message"] for entry in written) == sorted(
        f"thread {n} line {i}:" + " word" * (n * 60 + 1) for n in range(8) for i in range(400))


@pytest.mark.parametrize("endpoint, duration", [("api.check", 1.25), (None, None),
                                                ("widget.pagé", 0.5)])
def test_the_direct_access_line_is_the_formatters_line(endpoint, duration):
    record = logs._ACCESS.makeRecord(
        logs._ACCESS.name, logging.INFO, __file__, 0, "%s %s %s",
        ("POST", endpoint or "(no route)", 404), None,
        extra={"request_id": "edge-1", "method": "POST", "endpoint": endpoint, "status": 404,
               "duration": duration, "scrubbed": True})
    assert logs.access_line(record.created, "edge-1", "POST", endpoint, 404, duration) \
        == logs.JsonFormatter().format(record)


def test_with_only_its_own_handler_the_access_line_is_written_directly(client, capsys,
                                                                        monkeypatch):
    # pytest's own log capture is a handler on the root logger: without it, the app's stderr
    # handler is the only one, as in production, and logging's record is not made at all.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logs._ACCESS, "log", lambda *args, **kwargs: pytest.fail("made"))
    response = client.get("/healthz/nope", headers={"X-Request-ID": "edge-direct"})
    entry = next(entry for entry in lines(capsys.readouterr().err)
                 if entry.get("request_id") == "edge-direct")
    assert response.headers["X-Request-ID"] == "edge-direct"
    assert FIELDS <= set(entry) and entry["logger"] == "consent_widget.access"
    assert (entry["method"], entry["endpoint"], entry["status"]) == ("GET", None, 404)


def test_another_handler_gets_the_access_record(client, caplog):
    with caplog.at_level(logging.INFO, logger="consent_widget.access"):
        client.get("/healthz/nope", headers={"X-Request-ID": "edge-record"})
    record = next(record for record in caplog.records
                  if getattr(record, "request_id", None) == "edge-record")
    assert (record.method, record.status, record.getMessage()) == ("GET", 404,
                                                                   "GET (no route) 404")


@pytest.mark.parametrize("created", [0.0, 1764815455.0, 1764815455.001, 1764815455.5,
                                     1764815455.999, 1764815456.25])
def test_the_line_time_is_iso_8601_to_the_millisecond(created):
    from datetime import datetime, timezone
    assert logs._iso_time(created) == datetime.fromtimestamp(created, timezone.utc).isoformat(
        timespec="milliseconds")


def test_a_method_with_a_percent_sign_is_written_as_text():
    record = logs._ACCESS.makeRecord(
        logs._ACCESS.name, logging.INFO, __file__, 0, "%s %s %s", ("M%sX", "(no route)", 405),
        None, extra={"request_id": "edge-2", "method": "M%sX", "endpoint": None,
                     "status": 405, "duration": 2, "scrubbed": True})
    assert logs.access_line(record.created, "edge-2", "M%sX", None, 405, 2) \
        == logs.JsonFormatter().format(record)


def test_new_request_ids_are_128_bit_hex_and_differ():
    ids = {logs.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
