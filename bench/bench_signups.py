"""Signups per second on SQLite and PostgreSQL, check throughput on PostgreSQL, and the memory
of each gunicorn worker, in one run on the same machine.

For each database the script migrates an empty database, creates a campaign, serves the app
with ``gunicorn server:app`` (the project's gunicorn.conf.py as deployed, whose defaults depend
on the database, unless ``--workers`` says otherwise) and then, over loopback HTTP with
keep-alive connections (a worker without threads closes them after each answer):

1. submits ``--signups`` widget forms (``POST /w/<slug>``, newsletter and one network ticked),
   each writing three ledger events and queueing a confirmation email;
2. confirms each of them (``POST`` of its confirmation link), each writing the ``given`` events,
   a signed receipt and a second email;
3. on PostgreSQL, sends ``POST /api/v1/consents/check`` for ``--checks`` requests;
4. sends ``GET /healthz`` for ``--baseline`` requests (see below).

A signup counts once both its submission and its confirmation are answered; signups per second
is their number over the time of both phases. Each phase also prints the workers' CPU time per
request, which other work on the machine changes less than it changes throughput. Emails are
queued, not sent: no worker runs, and the worker is what composes and sends them, so its cost
is separate from the request path. The ``/healthz`` requests, which do nothing but pass
through what every request passes through, give the CPU time of the cheapest request, a
baseline for how fast the machine and its Python are: a signup's CPU time counted in such
requests depends mostly on the app, so it compares runs on different machines better than
signups per second do (on a shared machine, whose speed changes from one minute to the next,
the baseline's phase and the signups' still differ somewhat). The resident memory (RSS, and
PSS, which splits shared pages between the processes sharing them) of each gunicorn worker is
read from /proc after the load.

The load generator (this script) runs on the same cores as the server, so each phase also
prints its CPU time; on SQLite, whose server is the app itself, the run prints the signups per
second that the cores would allow if fully busy (the server's and the load generator's CPU per
signup), and if the load generator cost nothing.

On each database the same phases (without the checks and the baseline) are then run, unless
``--no-floor``, against three other apps, each served by gunicorn with the settings the
project's gunicorn.conf.py gives on that database, on a database of its own:

- the "floor" (:data:`FLOOR_APP`): a Flask app that does a minimal signup with only the parts
  a signup cannot do without (Flask, an itsdangerous link, SQLAlchemy's driver-level execution,
  one Ed25519 JWS by joserfc) and writes the same rows into the same schema, with no
  rate-limit library. What it reaches bounds what the app can reach on the machine;
- the first floor, the same behind Flask-Limiter (:data:`LIMITER_FLOOR_APP`), kept as a line
  of its own: its bookkeeping is a large share of a request, so it is no floor, and the
  difference between the two lines is what it costs;
- a minimal app (:data:`MINIMAL_APP`) that answers the same three requests with nothing
  behind them: what Flask and gunicorn cost.

The summary prints, for each, signups per second and the server's CPU time per signup, and
per database the ratios of the app to each (in signups per second, and in CPU per signup as
the other's over the app's: both read the larger, the closer). The app runs first, then the
others: on a machine whose speed drifts, compare several runs.

Targets: the app at least 0.8 of the floor's signups per second on SQLite and on PostgreSQL;
at least 300 signups per second on SQLite on two cores; resident memory (RSS) under 100 MB per
worker.

Run: ``.venv/bin/python bench/bench_signups.py`` (``--postgres URL`` of a server where the
script may create and drop databases, default the local one; ``--signups N``, ``--checks N``,
``--baseline N``, ``--workers N``, ``--clients N``; ``--no-postgres`` for SQLite alone,
``--no-floor`` without the floors and the minimal app; ``--quick`` for 300 signups, 1000
checks and 1000 baseline requests, a run of a couple of minutes, which explicit options
override). Not part of the test suite: figures depend on the machine
and on what else runs on it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from consent_widget import create_app, db, migrate, oauth, urls  # noqa: E402
from consent_widget.campaigns import create_campaign  # noqa: E402
from consent_widget.models import Campaign, Signup  # noqa: E402

import gunicorn_workers  # noqa: E402  (beside this script)

SECRET = secrets.token_urlsafe(32)
FLOOR_TARGET = 0.8


#: A minimal signup, served like the app, with the parts a signup cannot do without: Flask, the
#: campaign looked up by its slug, an itsdangerous link token, and on the app's own migrated
#: schema through SQLAlchemy's driver-level execution (its cheapest) the same rows: on
#: submission the subject, the signup, three hash-chained events, their states and the email in
#: the outbox; on confirmation the signup marked, two ``given`` events, their states, a receipt
#: signed with Ed25519 (joserfc), the email, and a page showing the receipt. On SQLite, writers
#: queue for the write lock on a lock file, as the app's do; on PostgreSQL, on the campaign's
#: row, as the ledger does. No rate-limit library, ORM, forms library, CSRF token, address
#: validation, translations, notices, webhooks, logs or metrics, and a smaller receipt, page
#: and emails. Like the app's, its writes to the ledger go one at a time. What it reaches
#: bounds what the app can reach with that design.
FLOOR_APP = """
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import uuid
import warnings
from datetime import datetime, timedelta, timezone

from flask import Flask, abort, jsonify, request
from itsdangerous import BadData, URLSafeTimedSerializer
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import MetaData, Table, create_engine, event, insert

warnings.filterwarnings("ignore")  # joserfc's notice that RFC 9864 renames EdDSA
app = Flask(__name__)
ON_SQLITE = os.environ["CONSENT_DATABASE_URL"].startswith("sqlite")
engine = create_engine(os.environ["CONSENT_DATABASE_URL"],
                       connect_args={"timeout": 30} if ON_SQLITE else {})

if ON_SQLITE:
    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record):
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=NORMAL")


events = Table("consent_events", MetaData(), autoload_with=engine)
engine.dispose()  # no connection of the preloading master may be inherited by the workers
EVENTS = insert(events).returning(events.c.id, sort_by_parameter_order=True)
lock_file = None
links = URLSafeTimedSerializer(os.environ["CONSENT_SECRET_KEY"], salt="confirm")
key = OKPKey.generate_key("Ed25519")
CAMPAIGN = "SELECT id, name FROM campaigns WHERE slug = :slug"
LOCK = ("UPDATE campaigns SET ledger_seq = ledger_seq WHERE id = :campaign "
        "RETURNING ledger_seq, ledger_head")
HEAD = "UPDATE campaigns SET ledger_seq = :seq, ledger_head = :head WHERE id = :campaign"
SUBJECT = ("SELECT id, public_id FROM subjects WHERE campaign_id = :campaign "
           "AND email_hmac = :digest")
NEW_SUBJECT = ("INSERT INTO subjects (campaign_id, public_id, email_hmac, email, link_version, "
               "created_at) VALUES (:campaign, :public_id, :digest, :email, 1, :now) RETURNING id")
NEW_SIGNUP = ("INSERT INTO signups (public_id, campaign_id, subject_id, choices, offered, locale, "
              "origin, gpc, created_at) VALUES (:public_id, :campaign, :subject, :choices, '{}', "
              "'en', '', :gpc, :now) RETURNING id")
NEW_STATE = ("INSERT INTO consent_states (campaign_id, subject_id, purpose, network, status, "
             "event_id, updated_at) VALUES (:campaign, :subject, :purpose, :network, :type, "
             ":event, :now)")
STATE = ("UPDATE consent_states SET status = :type, event_id = :event, given_at = :now, "
         "expires_at = :expires, updated_at = :now WHERE subject_id = :subject "
         "AND purpose = :purpose AND network = :network")
STATES = ("SELECT purpose, network, status, given_at, expires_at FROM consent_states "
          "WHERE subject_id = :subject")
OUTBOX = ("INSERT INTO outbox (campaign_id, kind, recipient, payload, status, attempts, "
          "next_attempt_at, last_error, created_at) VALUES (:campaign, 'email', :to, :payload, "
          "'pending', 0, :now, '', :now)")
SIGNUP = ("SELECT signups.id, signups.confirmed_at, signups.choices, subjects.id, "
          "subjects.public_id, subjects.email FROM signups JOIN subjects ON subjects.id = "
          "signups.subject_id WHERE signups.campaign_id = :campaign "
          "AND signups.public_id = :public_id")
CONFIRMED = "UPDATE signups SET confirmed_at = :now WHERE id = :signup"
RECEIPT = ("INSERT INTO receipts (id, campaign_id, subject_id, kid, jws, issued_at) "
           "VALUES (:id, :campaign, :subject, 'floor', :jws, :now)")
if not ON_SQLITE:  # psycopg's parameters are written %(name)s, sqlite3's :name
    for _name in ("CAMPAIGN", "LOCK", "HEAD", "SUBJECT", "NEW_SUBJECT", "NEW_SIGNUP", "NEW_STATE",
                  "STATE", "STATES", "OUTBOX", "SIGNUP", "CONFIRMED", "RECEIPT"):
        globals()[_name] = re.sub(r":(\\w+)", r"%(\\1)s", globals()[_name])
PAGE = app.jinja_env.from_string(\"\"\"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Confirmed · {{ campaign }}</title></head><body><main><h1>Your choices are confirmed</h1>
<p>We sent a copy of this receipt to {{ email }}.</p><h2>Receipt {{ claims.jti }}</h2>
<table>{% for state in states %}<tr><th>{{ state.purpose }} {{ state.network }}</th>
<td>{{ state.status }}</td><td>{{ state.given_at }}</td><td>{{ state.expires_at }}</td></tr>
{% endfor %}</table><dl>{% for name, value in claims|dictsort %}<dt>{{ name }}</dt>
<dd>{{ value }}</dd>{% endfor %}</dl><details><summary>Signed receipt</summary>
<pre>{{ receipt }}</pre></details></main></body></html>\"\"\")


@contextlib.contextmanager
def writing():
    # On PostgreSQL the campaign's row is the lock (LOCK below), as the ledger's.
    if not ON_SQLITE:
        with engine.begin() as connection:
            yield connection
        return
    # Opened in each worker: a lock file inherited through fork would be one lock for all.
    global lock_file
    if lock_file is None:
        lock_file = os.open(engine.url.database + "-floor.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)


def campaign_of(connection, slug):
    found = connection.exec_driver_sql(CAMPAIGN, {"slug": slug}).first()
    if found is None:
        abort(404)
    return found


def append(connection, campaign, head, subject_id, subject, signup, entries, now, method):
    seq, head = head
    rows = []
    for purpose, network, kind in entries:
        seq += 1
        body = {"campaign": "bench", "seq": seq, "subject": subject, "purpose": purpose,
                "network": network, "type": kind, "occurred_at": now.isoformat(),
                "method": method, "prev": head}
        prev, head = head, hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        rows.append({"campaign_id": campaign, "seq": seq, "subject_id": subject_id,
                     "purpose": purpose, "network": network, "type": kind, "occurred_at": now,
                     "signup_id": signup, "method": method, "actor": "subject", "origin": "",
                     "locale": "en", "prev_hash": prev, "hash": head})
    ids = connection.execute(EVENTS, rows).scalars().all()
    connection.exec_driver_sql(HEAD, {"seq": seq, "head": head, "campaign": campaign})
    return ids


def state_rows(entries, ids, **values):
    return [{"purpose": purpose, "network": network, "type": kind, "event": event_id, **values}
            for (purpose, network, kind), event_id in zip(entries, ids)]


@app.get("/w/<slug>")
def form(slug):
    with engine.connect() as connection:
        campaign_of(connection, slug)
    return "<form method=post><input name=email><input type=checkbox name=newsletter></form>"


@app.post("/w/<slug>")
def submit(slug):
    email = request.form.get("email", "").strip().lower()
    if "@" not in email:
        return jsonify(ok=False), 422
    choices = {"newsletter:": "newsletter" in request.form,
               "social_matching:facebook": request.form.get("social_matching") == "facebook",
               "social_matching:linkedin": request.form.get("social_matching") == "linkedin"}
    entries = [(*item.split(":"), "requested" if ticked else "refused")
               for item, ticked in choices.items()]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    digest = hashlib.sha256(email.encode()).hexdigest()
    public_id = "sgn_" + secrets.token_urlsafe(16)
    with writing() as connection:
        campaign, _name = campaign_of(connection, slug)
        # The write lock first, as the ledger takes it.
        head = connection.exec_driver_sql(LOCK, {"campaign": campaign}).one()
        found = connection.exec_driver_sql(SUBJECT, {"campaign": campaign,
                                                     "digest": digest}).first()
        subject, subject_public = found or (None, "sub_" + secrets.token_urlsafe(16))
        if subject is None:
            subject = connection.exec_driver_sql(NEW_SUBJECT, {
                "campaign": campaign, "public_id": subject_public, "digest": digest,
                "email": email, "now": now}).scalar_one()
        signup = connection.exec_driver_sql(NEW_SIGNUP, {
            "public_id": public_id, "campaign": campaign, "subject": subject,
            "choices": json.dumps(choices), "gpc": False, "now": now}).scalar_one()
        ids = append(connection, campaign, head, subject, subject_public, signup, entries, now,
                     "widget")
        connection.exec_driver_sql(NEW_STATE, state_rows(entries, ids, campaign=campaign,
                                                         subject=subject, now=now))
        link = f"/w/{slug}/confirm/" + links.dumps({"c": campaign, "s": public_id})
        connection.exec_driver_sql(OUTBOX, {
            "campaign": campaign, "to": email, "now": now,
            "payload": json.dumps({"to": email, "link": link})})
    return jsonify(ok=True, status="pending")


@app.post("/w/<slug>/confirm/<token>")
def confirm(slug, token):
    try:
        payload = links.loads(token, max_age=7 * 86400)
    except BadData:
        abort(404)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    expires = now + timedelta(days=730)
    with writing() as connection:
        campaign, name = campaign_of(connection, slug)
        if not isinstance(payload, dict) or payload.get("c") != campaign:
            abort(404)
        head = connection.exec_driver_sql(LOCK, {"campaign": campaign}).one()
        found = connection.exec_driver_sql(SIGNUP, {"campaign": campaign,
                                                    "public_id": payload.get("s")}).first()
        if found is None:
            abort(404)
        signup, confirmed_at, choices, subject, subject_public, email = found
        if confirmed_at is not None:
            return "already confirmed"
        connection.exec_driver_sql(CONFIRMED, {"now": now, "signup": signup})
        if isinstance(choices, str):  # PostgreSQL's driver decodes JSON, SQLite's does not
            choices = json.loads(choices)
        entries = [(*item.split(":"), "given") for item, ticked in choices.items() if ticked]
        ids = append(connection, campaign, head, subject, subject_public, signup, entries, now,
                     "email_confirmation")
        connection.exec_driver_sql(STATE, state_rows(entries, ids, subject=subject, now=now,
                                                     expires=expires))
        states = [dict(row._mapping)
                  for row in connection.exec_driver_sql(STATES, {"subject": subject})]
        claims = {"iss": "http://bench.example.org", "jti": str(uuid.uuid4()),
                  "sub": subject_public, "iat": now, "controller": name,
                  "policy": "https://example.org/p", "method": "email_confirmation",
                  "consents": states}
        receipt = jws.serialize_compact({"alg": "EdDSA", "kid": "floor"},
                                        json.dumps(claims, default=str).encode(), key,
                                        algorithms=["EdDSA"])
        connection.exec_driver_sql(RECEIPT, {"id": claims["jti"], "campaign": campaign,
                                             "subject": subject, "jws": receipt, "now": now})
        connection.exec_driver_sql(OUTBOX, {
            "campaign": campaign, "to": email, "now": now,
            "payload": json.dumps({"to": email, "receipt": receipt})})
    return PAGE.render(campaign=name, email=email, states=states, receipt=receipt,
                       claims={k: v for k, v in claims.items() if k != "consents"})


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
"""

#: The floor as it was first written: the same app behind Flask-Limiter (per address and per
#: email on the form, per address on the link; Flask-Limiter's memory storage). Kept as a
#: line of its own: Flask-Limiter's bookkeeping costs a large share of a request, so it is no
#: floor, and the difference between the two lines is what it costs.
LIMITER_FLOOR_APP = """
from flask import request
from flask_limiter import Limiter
from floor_app import app

limiter = Limiter(lambda: request.remote_addr, app=app, storage_uri="memory://")
per_email = limiter.limit("10000000 per minute", key_func=lambda: request.form.get("email", ""))
for view, limits in (("submit", [limiter.limit("10000000 per minute"), per_email]),
                     ("confirm", [limiter.limit("10000000 per minute")])):
    for limit in reversed(limits):
        app.view_functions[view] = limit(app.view_functions[view])
"""

#: The least any request costs here: Flask answering the widget's three requests (its page,
#: the submission, the confirmation) with nothing behind them.
MINIMAL_APP = """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/w/<slug>")
def form(slug):
    return "<form method=post><input name=email></form>"


@app.post("/w/<slug>")
def submit(slug):
    request.form.get("email")
    return jsonify(ok=True, status="pending")


@app.post("/w/<slug>/confirm/<token>")
def confirm(slug, token):
    return "<!doctype html><p>Your choices are confirmed</p>"


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
"""

#: The apps served beside the project's, by the name they are printed under.
APPS = {"floor": ("floor_app", FLOOR_APP),
        "floor + Flask-Limiter": ("limiter_floor_app", LIMITER_FLOOR_APP),
        "minimal": ("minimal_app", MINIMAL_APP)}


def cores() -> int:
    """The cores this process may run on (its affinity, not all the machine's)."""
    return len(os.sched_getaffinity(0))


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(url: str, outbox: str):
    """Migrate the database at ``url``, create the campaign ``bench``; return the app."""
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": url,
                      "BASE_URL": "http://bench.example.org", "MAIL_URL": f"file://{outbox}",
                      "MAIL_FROM": "Bench <no-reply@example.org>"})
    with app.app_context():
        migrate.upgrade(db.engine())
        with db.transaction() as session:
            create_campaign(session, "bench", name="Bench 2027", controller="Bench 2027",
                            contact_email="dpo@example.org", policy_url="https://example.org/p",
                            origins=[], locale="en", networks=["facebook", "linkedin"])
    return app


class Server:
    """``gunicorn server:app`` on a loopback port, with the project's gunicorn.conf.py; or,
    given ``other`` (a directory and the name of a module in it), that app with the settings
    that file gives on the same database: preloaded; on SQLite one single-threaded worker per
    core, on PostgreSQL two workers per core of four threads each, unless ``WEB_CONCURRENCY``
    and ``GUNICORN_THREADS`` say otherwise."""

    def __init__(self, url: str, outbox: str, workers: int | None,
                 other: tuple[str, str] | None = None):
        self.port = free_port()
        env = {**os.environ, "CONSENT_DATABASE_URL": url, "CONSENT_SECRET_KEY": SECRET,
               "CONSENT_BASE_URL": "http://bench.example.org",
               "CONSENT_MAIL_URL": f"file://{outbox}",
               "CONSENT_MAIL_FROM": "Bench <no-reply@example.org>",
               "CONSENT_LOG_LEVEL": "WARNING",
               # One client address sends everything: the limits would measure themselves.
               "CONSENT_RATELIMIT_SIGNUP_PER_IP": "10000000 per minute",
               "CONSENT_RATELIMIT_LINKS": "10000000 per minute",
               "CONSENT_RATELIMIT_TOKEN": "10000000 per minute",
               "CONSENT_RATELIMIT_API": "10000000 per minute"}
        command = [sys.executable, "-m", "gunicorn", "server:app",
                   "--bind", f"127.0.0.1:{self.port}"]
        if other is not None:
            directory, module = other
            empty = os.path.join(directory, "gunicorn.conf.py")  # so no other config is read
            Path(empty).write_text("")
            on_sqlite = url.startswith("sqlite")
            threads = int(os.environ.get("GUNICORN_THREADS", 1 if on_sqlite else 4))
            command[3:4] = ["--config", empty, "--chdir", directory, "--preload",
                            "--worker-class", "sync" if threads == 1 else "gthread",
                            "--threads", str(threads), "--keep-alive", "5", f"{module}:app"]
            workers = workers or int(os.environ.get(
                "WEB_CONCURRENCY", cores() * (1 if on_sqlite else 2)))
        if workers:
            command += ["--workers", str(workers)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = request(self.connection(), "GET", "/w/bench")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def connection(self) -> http.client.HTTPConnection:
        """A new keep-alive connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far."""
        return gunicorn_workers.cpu_seconds(self.process.pid)

    def worker_memory(self) -> list[tuple[int, int]]:
        """(RSS, PSS) in kB of each worker process, read from /proc."""
        figures = []
        for pid in gunicorn_workers.worker_pids(self.process.pid):
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss = int(re.search(r"Pss:\s+(\d+)", rollup).group(1))
            figures.append((rss, pss))
        return figures

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        self.process.terminate()
        self.process.wait(60)


def request(connection, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    """One request on a keep-alive connection; returns (status, body)."""
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


class Connection:
    """A keep-alive HTTP/1.1 connection of the asyncio client, opened again when the server
    closes it (a worker without threads closes after each answer, as it would for a proxy).

    One event loop drives every connection of a run, as a reverse proxy does: a client of one
    thread per connection would compete for Python's interpreter lock and answer the server's
    close late, which a single-threaded worker waits for.
    """

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict | None = None) -> tuple[int, bytes]:
        """Send one request and read its answer; returns (status, body)."""
        reused = self.writer is not None
        if not reused:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"{method} {path} HTTP/1.1", "Host: bench.example.org",
                 f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            status_line = await self.reader.readline()
        except ConnectionError:
            status_line = b""
        if not status_line and reused:  # the server closed it while idle: open another
            self.close()
            return await self.request(method, path, body, headers)
        if not status_line:
            raise ConnectionError(f"no answer to {method} {path}")
        status = int(status_line.split()[1])
        length, closing = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                closing = True
            elif name.lower() == "transfer-encoding":  # the app's answers all have a length
                raise ValueError(f"{method} {path} answered with Transfer-Encoding {value}")
        answer = await self.reader.readexactly(length)
        if closing:
            self.close()
        return status, answer

    def close(self) -> None:
        """Close the connection, if open."""
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def run_clients(server: Server, clients: int, jobs: Sequence,
                make_request) -> tuple[float, float, float]:
    """Send ``await make_request(connection, state, job)`` for every job from ``clients``
    connections at once; return the seconds, the workers' CPU milliseconds per job and this
    process's (the load generator's, which shares the machine's cores) per job."""
    failures = []

    async def client(mine):
        connection, state = Connection(server.port), {}
        for job in mine:
            status, body = await make_request(connection, state, job)
            if not 200 <= status < 300:
                failures.append((status, body[:200]))
        connection.close()

    async def everyone():
        await asyncio.gather(*(client(jobs[i::clients]) for i in range(clients)))

    started, cpu_before = time.perf_counter(), server.cpu_seconds()
    client_before = time.process_time()
    asyncio.run(everyone())
    elapsed = time.perf_counter() - started
    cpu_ms = (server.cpu_seconds() - cpu_before) * 1000 / len(jobs)
    client_ms = (time.process_time() - client_before) * 1000 / len(jobs)
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    return elapsed, cpu_ms, client_ms


async def submit(connection: Connection, state: dict, email: str) -> tuple[int, bytes]:
    """Submit the widget form for ``email`` (the page is loaded once per client)."""
    if "fields" not in state:
        _, page = await connection.request("GET", "/w/bench")
        state["fields"] = {}
        for tag in re.findall(rb"<input\b[^>]*>", page):
            attributes = dict(re.findall(rb'([\w-]+)="([^"]*)"', tag))
            if attributes.get(b"type") == b"hidden":
                value = attributes.get(b"value", b"").decode()
                state["fields"][attributes[b"name"].decode()] = value
    form = {**state["fields"], "email": email, "newsletter": "y", "social_matching": "facebook"}
    return await connection.request("POST", "/w/bench", urllib.parse.urlencode(form).encode(),
                                    {"Content-Type": "application/x-www-form-urlencoded",
                                     "Accept": "application/json"})


async def confirm(connection: Connection, _state: dict, path: str) -> tuple[int, bytes]:
    """Press Confirm on a confirmation page."""
    return await connection.request("POST", path, b"",
                                    {"Content-Type": "application/x-www-form-urlencoded"})


async def probe(connection: Connection, _state: dict, _job) -> tuple[int, bytes]:
    """The baseline: ``GET /healthz``, which does no work of its own but passes through what
    every request passes through (gunicorn, Flask, the request log, the metrics)."""
    return await connection.request("GET", "/healthz")


def confirmation_paths(app) -> list[str]:
    """The confirmation link of every signup, as its email carries it."""
    with app.app_context():
        session = db.session()
        campaign = session.scalars(select(Campaign)).one()
        return [urllib.parse.urlsplit(urls.confirm_url(campaign, signup)).path
                for signup in session.scalars(select(Signup).order_by(Signup.id))]


def floor_paths(url: str) -> list[str]:
    """The floor's confirmation links, as its outbox holds them."""
    engine = create_engine(url)
    with engine.connect() as connection:
        payloads = connection.execute(text(
            "SELECT payload FROM outbox WHERE kind = 'email' ORDER BY id")).scalars().all()
    engine.dispose()
    return [json.loads(payload)["link"] for payload in payloads if "link" in payload]


def bench_signups(name: str, url: str, args, tmp: str, variant: str = "app") -> dict:
    """Measure signups per second (and, on PostgreSQL, checks per second) on one database:
    of the app, or of one of :data:`APPS` (``variant``) on a database of its own."""
    outbox = os.path.join(tmp, f"outbox-{name}-{variant}")
    app = prepare(url, outbox)
    other = None
    if variant != "app":
        other = (os.path.join(tmp, "apps"), APPS[variant][0])
        os.makedirs(other[0], exist_ok=True)
        for module, source in APPS.values():
            Path(other[0], f"{module}.py").write_text(source)
    server = Server(url, outbox, args.workers, other=other)
    try:
        emails = [f"bench{i}@example.org" for i in range(args.signups)]
        submit_seconds, submit_cpu, submit_client = run_clients(server, args.clients, emails,
                                                                submit)
        if variant == "app":
            paths = confirmation_paths(app)
        elif variant == "minimal":
            paths = [f"/w/bench/confirm/{i}" for i in range(len(emails))]
        else:
            paths = floor_paths(url)
        confirm_seconds, confirm_cpu, confirm_client = run_clients(server, args.clients, paths,
                                                                   confirm)
        result = {"database": name, "variant": variant, "signups": len(paths),
                  "submit_per_s": len(paths) / submit_seconds,
                  "confirm_per_s": len(paths) / confirm_seconds,
                  "signups_per_s": len(paths) / (submit_seconds + confirm_seconds),
                  "submit_cpu_ms": round(submit_cpu, 2), "confirm_cpu_ms": round(confirm_cpu, 2),
                  "signup_cpu_ms": round(submit_cpu + confirm_cpu, 2),
                  "client_cpu_ms": round(submit_client + confirm_client, 2)}
        if name.startswith("sqlite"):  # PostgreSQL's own processes share the cores too
            server_ms, client_ms = submit_cpu + confirm_cpu, submit_client + confirm_client
            # What the cores could serve fully busy, and if the load generator cost nothing.
            result["cores_bound_per_s"] = round(cores() * 1000 / (server_ms + client_ms), 1)
            result["server_bound_per_s"] = round(cores() * 1000 / server_ms, 1)
        if variant == "app":
            if args.checks and name == "postgresql":
                result["checks_per_s"] = bench_checks(app, server, emails, args)
            _, baseline_cpu, _ = run_clients(server, args.clients, range(args.baseline), probe)
            result["baseline_cpu_ms"] = round(baseline_cpu, 3)
            result["signup_in_baselines"] = round((submit_cpu + confirm_cpu) / baseline_cpu, 1)
            memory = server.worker_memory()
            result["worker_rss_mb"] = [round(rss / 1024, 1) for rss, _ in memory]
            result["worker_pss_mb"] = [round(pss / 1024, 1) for _, pss in memory]
    finally:
        server.stop()
        with app.app_context():
            db.engine().dispose()
    return result


def bench_checks(app, server: Server, emails: list[str], args) -> float:
    """Checks per second: ``POST /api/v1/consents/check`` of known addresses."""
    with app.app_context():
        with db.transaction() as session:
            client, secret = oauth.create_client(session, session.scalars(select(Campaign)).one())
            client_id = client.client_id
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    connection = server.connection()
    status, body = request(connection, "POST", "/oauth/token", b"grant_type=client_credentials",
                           {"Authorization": f"Basic {basic}",
                            "Content-Type": "application/x-www-form-urlencoded"})
    connection.close()
    token = json.loads(body)["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    jobs = [json.dumps({"email": emails[i % len(emails)], "purpose": "social_matching",
                        "network": "facebook"}).encode() for i in range(args.checks)]

    async def check(connection: Connection, _state: dict, body: bytes) -> tuple[int, bytes]:
        return await connection.request("POST", "/api/v1/consents/check", body, headers)

    seconds, _cpu, _client = run_clients(server, args.clients, jobs, check)
    return args.checks / seconds


def postgres_database(server_url: str):
    """Create a database of the run's own on ``server_url``; return its URL and a dropper."""
    server = make_url(server_url)
    name = f"consent_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    """Run the benchmark and print one line of figures per database, then a summary."""
    gunicorn_workers.require_bench_extra()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=None, help="default 1000")
    parser.add_argument("--checks", type=int, default=None, help="default 3000")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn processes (default: gunicorn.conf.py's)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=None,
                        help="requests to /healthz, the cheapest request (default 3000, at "
                             "least 1000: the kernel counts CPU time in ticks of 10 ms)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-floor", action="store_true",
                        help="leave out the floors and the minimal app")
    parser.add_argument("--quick", action="store_true",
                        help="300 signups, 1000 checks, 1000 baseline requests: a run of a "
                             "couple of minutes")
    args = parser.parse_args()
    quick = {"signups": 300, "checks": 1000, "baseline": 1000}
    full = {"signups": 1000, "checks": 3000, "baseline": 3000}
    for option, value in (quick if args.quick else full).items():
        if getattr(args, option) is None:  # an explicit option wins over --quick
            setattr(args, option, value)
    if args.baseline < 1000:
        parser.error("--baseline must be at least 1000")
    workers = args.workers or "gunicorn.conf.py's"
    print(f"{cores()} cores, Python {platform.python_version()}, {workers} gunicorn "
          f"workers, {args.clients} clients, {args.signups} signups", flush=True)
    variants = ["app"] + ([] if args.no_floor else list(APPS))
    databases = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in databases:
            # Each variant on a database of its own, one after the other: on a machine whose
            # speed drifts, compare several runs.
            for variant in variants:
                if name == "sqlite":
                    url = f"sqlite:///{tmp}/bench-{len(results)}.sqlite3"
                    drop = None
                else:
                    url, drop = postgres_database(args.postgres)
                try:
                    results.append(bench_signups(name, url, args, tmp, variant))
                finally:
                    if drop is not None:
                        drop()
                print(json.dumps(results[-1]), flush=True)
    print("\nsummary")
    for result in results:
        line = (f"  {result['database']:<10} {result['variant']:<21} "
                f"{result['signups_per_s']:7.1f} signups/s "
                f"(submit {result['submit_per_s']:.1f}/s, "
                f"confirm {result['confirm_per_s']:.1f}/s); "
                f"server CPU per signup {result['signup_cpu_ms']:.2f} ms "
                f"({result['submit_cpu_ms']} + {result['confirm_cpu_ms']}), "
                f"load generator {result['client_cpu_ms']} ms")
        if "cores_bound_per_s" in result:
            line += (f"; {result['cores_bound_per_s']:.0f}/s with the cores fully busy, "
                     f"{result['server_bound_per_s']:.0f}/s if the load generator cost nothing")
        if "checks_per_s" in result:
            line += f"; {result['checks_per_s']:.1f} checks/s"
        if result["variant"] == "app":
            # The others' /healthz passes through no request log or metrics: not a baseline.
            line += (f"; a signup costs {result['signup_in_baselines']} baseline requests "
                     f"(/healthz, {result['baseline_cpu_ms']} ms)")
            line += (f"; {len(result['worker_rss_mb'])} workers, "
                     f"RSS {max(result['worker_rss_mb'])} MB, "
                     f"PSS {max(result['worker_pss_mb'])} MB")
        print(line)
    by_key = {(result["database"], result["variant"]): result for result in results}
    for name in databases:
        app = by_key[(name, "app")]
        for of in variants[1:]:
            other = by_key[(name, of)]
            target = f" (target >= {FLOOR_TARGET})" if of == "floor" else ""
            print(f"  {name:<10} ratio app/{of:<21}: "
                  f"{app['signups_per_s'] / other['signups_per_s']:.2f} in signups/s{target}, "
                  f"{other['signup_cpu_ms'] / app['signup_cpu_ms']:.2f} in server CPU per signup")
        if ("floor" in variants):
            floor, limited = by_key[(name, "floor")], by_key[(name, "floor + Flask-Limiter")]
            print(f"  {name:<10} Flask-Limiter adds "
                  f"{limited['signup_cpu_ms'] - floor['signup_cpu_ms']:.2f} ms of server CPU per "
                  f"signup to the floor ({floor['signup_cpu_ms']:.2f} ms)")
    print(f"  targets: app >= {FLOOR_TARGET} of the floor's signups/s on SQLite and PostgreSQL; "
          f">= 300 signups/s on SQLite on two cores; < 100 MB resident per worker")

if __name__ == "__main__":
    main()
