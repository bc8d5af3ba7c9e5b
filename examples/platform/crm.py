"""A demo campaign CRM, NationBuilder-like, that integrates consent_widget as a platform should.

- It keeps its own database (SQLite): supporters, matched social profiles, processed webhooks.
- "Match" looks a supporter up in a social directory (here :mod:`social_directory`, a FAKE that
  stands in for the networks) only after ``check`` allows it, and stores the signed decision
  beside the match as proof.
- On a ``consent.withdrawn`` or ``consent.expired`` webhook it deletes what it matched on that
  network; on ``subject.erased`` everything matched about the person. Each ``webhook-id`` is
  processed once, so redeliveries are harmless.

Run it beside the service (``make run`` does)::

    python examples/platform/crm.py --consent-url http://127.0.0.1:5000 \\
        --credentials instance/demo-client.json --port 5002
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from datetime import datetime, timezone

from flask import Flask, abort, g, jsonify, render_template_string, request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import social_directory  # noqa: E402  (beside this file, not a package)

from consent_widget.client import ConsentClient, VerificationError  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS supporters (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS matches (
    id INTEGER PRIMARY KEY, supporter_id INTEGER NOT NULL REFERENCES supporters(id),
    network TEXT NOT NULL, subject_id TEXT NOT NULL, profile TEXT NOT NULL,
    decision TEXT NOT NULL, matched_at TEXT NOT NULL, UNIQUE (supporter_id, network));
CREATE TABLE IF NOT EXISTS processed_webhooks (
    webhook_id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at TEXT NOT NULL);
"""

PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Demo CRM</title>
<h1>Demo CRM <small>(a platform integrating consent_widget)</small></h1>
<p>Profiles come from a <strong>fake social directory</strong>: a test double, no network is
called.</p>
<form method="post" action="/supporters"><label>Email <input name="email" type="email"
required></label> <button>Add supporter</button></form>
<table border="1" cellpadding="4"><tr><th>Supporter</th><th>Matched</th><th>Match</th></tr>
{% for s in supporters %}<tr><td>{{ s.email }}</td>
<td>{% for m in s.matches %}{{ m.network }}: {{ m.profile.location }},
{{ m.profile.biography }}<br>{% endfor %}</td>
<td>{% for n in networks %}<form method="post" action="/supporters/{{ s.id }}/match"
style="display:inline"><button name="network" value="{{ n }}">{{ n }}</button></form>
{% endfor %}</td></tr>{% endfor %}</table></html>"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def create_crm(database: str, consent: ConsentClient, webhook_secret: str,
               networks=("facebook", "linkedin", "twitter", "meetup")) -> Flask:
    """The CRM app on the SQLite file ``database``, asking ``consent`` before every match.
    ``webhook_secret`` (the endpoint's ``whsec_``) is kept in ``config["WEBHOOK_SECRET"]``."""
    crm = Flask("demo_crm")
    crm.config["WEBHOOK_SECRET"] = webhook_secret
    with sqlite3.connect(database) as connection:
        connection.executescript(SCHEMA)

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = sqlite3.connect(database)
            g.db.row_factory = sqlite3.Row
        return g.db

    @crm.teardown_appcontext
    def close(_exc):
        connection = g.pop("db", None)
        if connection is not None:
            connection.close()

    def supporter_or_404(supporter_id: int) -> sqlite3.Row:
        row = db().execute("SELECT * FROM supporters WHERE id = ?", (supporter_id,)).fetchone()
        if row is None:
            abort(404)
        return row

    @crm.get("/")
    def index():
        supporters = []
        for row in db().execute("SELECT * FROM supporters ORDER BY id"):
            matches = [{"network": m["network"], "profile": json.loads(m["profile"])}
                       for m in db().execute("SELECT * FROM matches WHERE supporter_id = ?",
                                             (row["id"],))]
            supporters.append({"id": row["id"], "email": row["email"], "matches": matches})
        return render_template_string(PAGE, supporters=supporters, networks=networks)

    @crm.post("/supporters")
    def add_supporter():
        """A signup reaches the CRM (from the campaign's site or an import)."""
        email = (request.form.get("email") or (request.get_json(silent=True) or {}).get("email")
                 or "").strip()
        if not email or "@" not in email:
            return jsonify(error="invalid_email"), 400
        db().execute("INSERT OR IGNORE INTO supporters (email, created_at) VALUES (?, ?)",
                     (email, _now()))
        db().commit()
        row = db().execute("SELECT id FROM supporters WHERE email = ?", (email,)).fetchone()
        return jsonify(id=row["id"], email=email), 201

    @crm.post("/supporters/<int:supporter_id>/match")
    def match(supporter_id: int):
        """Match one supporter on one network, only if consent_widget allows it now."""
        supporter = supporter_or_404(supporter_id)
        network = request.form.get("network") or request.args.get("network", "")
        if network not in networks:
            return jsonify(error="invalid_network"), 400
        answer = consent.check("social_matching", network, email=supporter["email"])
        if not answer.allowed:
            return jsonify(matched=False, status=answer.status), 409
        profile = social_directory.lookup(supporter["email"], network)
        db().execute("INSERT OR REPLACE INTO matches (supporter_id, network, subject_id, profile, "
                     "decision, matched_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (supporter_id, network, answer.subject_id, json.dumps(profile),
                      answer.decision, _now()))
        db().commit()
        return jsonify(matched=True, network=network, profile=profile,
                       decision=answer.decision)

    @crm.post("/webhooks/consent")
    def consent_webhook():
        """Receive consent_widget's events: verify, process each webhook-id once, acknowledge."""
        try:
            event = ConsentClient.verify_webhook(request.get_data(), request.headers,
                                                 crm.config["WEBHOOK_SECRET"])
        except VerificationError:
            return jsonify(error="invalid_signature"), 401
        connection = db()
        fresh = connection.execute(
            "INSERT OR IGNORE INTO processed_webhooks (webhook_id, type, received_at) "
            "VALUES (?, ?, ?)", (event.id, event.type, _now())).rowcount
        if fresh:
            subject_id, network = event.data.get("subject_id"), event.data.get("network")
            if event.type in ("consent.withdrawn", "consent.expired") and network:
                connection.execute("DELETE FROM matches WHERE subject_id = ? AND network = ?",
                                   (subject_id, network))
            elif event.type == "subject.erased":
                connection.execute("DELETE FROM matches WHERE subject_id = ?", (subject_id,))
        connection.commit()  # the deletion and the record of the id, together
        return "", 204

    return crm


def main(argv=None) -> None:
    """Serve the demo CRM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consent-url", default="http://127.0.0.1:5000")
    parser.add_argument("--credentials", default="instance/demo-client.json",
                        help="JSON with client_id, client_secret and webhook_secret")
    parser.add_argument("--database", default="instance/demo-crm.sqlite3")
    parser.add_argument("--port", type=int, default=5002)
    args = parser.parse_args(argv)
    with open(args.credentials, encoding="utf-8") as fh:
        credentials = json.load(fh)
    consent = ConsentClient(args.consent_url, credentials["client_id"],
                            credentials["client_secret"])
    create_crm(args.database, consent, credentials["webhook_secret"]).run(port=args.port)


if __name__ == "__main__":
    main()
