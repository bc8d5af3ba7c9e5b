"""Crash safety: a gunicorn-served app and two outbox workers, all killed with SIGKILL while
signups and withdrawals stream in over HTTP, then restarted.

Afterwards every request that got a 2xx is in the ledger, the chain verifies from the command
line, and every queued email reaches the SMTP server: at least once, and never twice for a
receiver that deduplicates on ``Message-ID``. Runs on SQLite and, when configured, PostgreSQL.
"""
from __future__ import annotations

import ctypes
import email
import email.policy
import html
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from consent_widget import db, ledger, mail, urls
from consent_widget.campaigns import create_campaign
from consent_widget.emails import lookup_key
from consent_widget.models import Campaign, ConsentEvent, OutboxMessage, Signup
from helpers import give

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 60  # two signups for every withdrawal
WITHDRAWALS = 20
CLIENTS = 4

# A worker killed between claiming an email and recording it sent leaves the row leased; the
# lease (five minutes in production) is cut to two seconds so that the test sees the row taken
# over after the restart. Everything else is the real `consent-widget worker` command.
WORKER = ("import datetime, sys; from consent_widget import outbox, cli; "
          "outbox.LEASE = datetime.timedelta(seconds=2); "
          "sys.exit(cli.main(['worker', '--interval', '0.1']))")


# Loaded before any fork: the child only calls into it (see ``_die_with_the_test``).
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_the_test() -> None:
    # Runs in each child before exec: if the test process dies (a CI timeout kills it without
    # running any finally), the kernel SIGKILLs its servers too, so none outlives the run.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """gunicorn (two workers) and two outbox workers, each in a process group of its own."""

    def __init__(self, env: dict, port: int, logs: Path):
        self.env, self.port, self.logs = env, port, logs
        self.processes: list[subprocess.Popen] = []
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        commands = [[sys.executable, "-m", "gunicorn", "server:app", "--bind",
                     f"127.0.0.1:{self.port}", "--workers", "2"]]
        commands += [[sys.executable, "-c", WORKER]] * 2
        for index, command in enumerate(commands):
            log = open(self.logs / f"process{index}.start{self.starts}.log", "wb")
            self.processes.append(subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_the_test))
            log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/w/demo", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("gunicorn did not answer; see " + str(self.logs))

    def kill(self) -> None:
        """SIGKILL every process of the stack, gunicorn's workers included."""
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes:
            process.wait(30)
        self.processes = []


def post(url: str, fields: dict, accept: str = "text/html") -> int:
    """POST a form; return the status, or 0 when the connection failed."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(),
                                     headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, http.client.HTTPException):  # refused, or cut in the middle of the answer
        return 0


def signup_fields(base: str) -> dict | None:
    """The hidden fields of the widget page (the CSRF token among them), or None when down."""
    try:
        with urllib.request.urlopen(f"{base}/w/demo", timeout=10) as response:
            page = response.read().decode()
    except (OSError, http.client.HTTPException):  # refused, or cut in the middle of the page
        return None
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", page):
        attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        if attributes.get("type") == "hidden":
            fields[attributes["name"]] = html.unescape(attributes.get("value", ""))
    return fields


def stream(stack: Stack, base: str, manage_paths: dict):
    """Start the stack, stream the requests from a few clients, SIGKILL every process a third of
    the way through, restart them, finish the stream and wait for the outbox to drain.

    Returns how many requests were acknowledged before the kill, the acknowledged requests,
    the clients' failures, the signups sent again after a failed attempt and the outbox
    statuses at the end."""
    operations = [("signup", f"s{i}@example.org") for i in range(REQUESTS)]
    operations[::3] = [("withdraw", address) for address in manage_paths][:len(operations[::3])]
    acknowledged: list[tuple[str, str]] = []
    failures: list[tuple[str, str, int]] = []
    resent: set[str] = set()
    lock = threading.Lock()

    def client(mine):
        for kind, address in mine:
            deadline = time.monotonic() + 60
            status = 0
            while not status and time.monotonic() < deadline:
                if kind == "signup":
                    fields = signup_fields(base)
                    status = 0 if fields is None else post(
                        f"{base}/w/demo", {**fields, "email": address, "newsletter": "y",
                                           "social_matching": "facebook"},
                        accept="application/json")
                else:
                    status = post(base + manage_paths[address], {"withdraw": "all"})
                if not status:  # connection refused or cut: the server is down, try again
                    if kind == "signup":
                        with lock:
                            resent.add(address)
                    time.sleep(0.05)
            with lock:
                if 200 <= status < 300:
                    acknowledged.append((kind, address))
                else:
                    failures.append((kind, address, status))

    stack.start()
    threads = [threading.Thread(target=client, args=(operations[i::CLIENTS],), daemon=True)
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) + len(failures) < len(operations) // 3:
        assert time.monotonic() < deadline, "the stream stalled before the crash"
        time.sleep(0.01)
    stack.kill()  # mid-stream: requests in flight, emails being sent
    killed_at = len(acknowledged)
    stack.start()
    for thread in threads:
        thread.join(120)
    statuses = []
    deadline = time.monotonic() + 60
    engine = create_engine(stack.env["CONSENT_DATABASE_URL"])
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            statuses = connection.scalars(select(OutboxMessage.status)).all()
        if set(statuses) == {"sent"}:
            break
        time.sleep(0.2)
    engine.dispose()
    return killed_at, acknowledged, failures, resent, statuses


def test_every_acknowledged_request_and_queued_email_survives_sigkill(app, smtp_server, tmp_path):
    """With gunicorn.conf.py's workers: single-threaded on SQLite, threaded on PostgreSQL."""
    survives_sigkill(app, smtp_server, tmp_path, {})


@pytest.mark.parametrize("app", ["sqlite"], indirect=True)
def test_threaded_workers_on_sqlite_survive_sigkill_too(app, smtp_server, tmp_path):
    survives_sigkill(app, smtp_server, tmp_path, {"GUNICORN_THREADS": "2"})


def survives_sigkill(app, smtp_server, tmp_path, gunicorn_env: dict) -> None:
    """Stream signups and withdrawals at gunicorn and workers, SIGKILL them all mid-stream,
    restart them, and check that nothing acknowledged or queued was lost or sent twice."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Supporters who gave consent earlier and withdraw during the stream, by their manage link.
    withdrawers = [f"w{i}@example.org" for i in range(WITHDRAWALS)]
    manage_paths = {}
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "demo", name="Marie 2027", controller="Marie 2027",
                            contact_email="dpo@marie2027.test",
                            policy_url="https://marie2027.test/privacy", origins=[],
                            locale="en", networks=["facebook"])
    for address in withdrawers:
        give(app, "demo", address, newsletter=True, networks=["facebook"])
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).one()
        for address in withdrawers:
            subject = ledger.find_subject(session, campaign, address, lookup_key(app.config))
            manage_paths[address] = urllib.parse.urlsplit(urls.manage_url(campaign, subject)).path

    env = {**os.environ, "CONSENT_DATABASE_URL": app.config["DATABASE_URL"],
           "CONSENT_SECRET_KEY": app.config["SECRET_KEY"], "CONSENT_BASE_URL": base,
           "CONSENT_MAIL_URL": smtp_server.url, "CONSENT_MAIL_FROM": app.config["MAIL_FROM"],
           "CONSENT_OUTBOX_BACKOFF_BASE": "1",
           # The stream comes from one address; the limits are not what is tested here.
           "CONSENT_RATELIMIT_SIGNUP_PER_IP": "100000 per minute",
           "CONSENT_RATELIMIT_LINKS": "100000 per minute", **gunicorn_env}
    stack = Stack(env, port, tmp_path)
    try:
        killed_at, acknowledged, failures, resent, statuses = stream(stack, base, manage_paths)
    finally:
        stack.kill()
    assert failures == []
    assert 0 < killed_at < REQUESTS
    assert len(acknowledged) == REQUESTS
    assert set(statuses) == {"sent"}, "queued emails were left undelivered after the restart"

    verify = subprocess.run([str(Path(sys.executable).parent / "consent-widget"), "ledger",
                             "verify", "demo"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["ok"] is True

    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).one()
        for kind, address in acknowledged:
            subject = ledger.find_subject(session, campaign, address, lookup_key(app.config))
            assert subject is not None, address
            if kind == "signup":
                assert session.scalars(select(Signup).where(Signup.subject_id == subject.id)).all()
            else:
                types = session.scalars(select(ConsentEvent.type)
                                        .where(ConsentEvent.subject_id == subject.id)).all()
                assert types.count("withdrawn") == 2, address  # newsletter and facebook
        queued = {email.message_from_bytes(mail.message_bytes(payload),
                                           policy=email.policy.default)["Message-ID"]
                  for payload in session.scalars(select(OutboxMessage.payload))}
    received = smtp_server.message_ids()
    # At least once: every queued email arrived. Never twice for an idempotent receiver: a
    # resend after a crash carries the same Message-ID, so deduplicating on it leaves one each.
    assert set(received) == queued
    # Two emails for each earlier consent, one for each acknowledged signup or withdrawal. A
    # signup committed just before the kill, whose answer the kill cut, was sent again by its
    # client and recorded twice (a form POST is not idempotent): at most one more email each.
    expected = 2 * WITHDRAWALS + len(acknowledged)
    assert expected <= len(queued) <= expected + len(resent)
