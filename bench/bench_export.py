"""How fast a proof export is written and verified, and whether its memory stays flat.

In one run:

1. builds an SQLite database with two campaigns, a small one (a tenth of ``--events``) and a
   large one (``--events``, 1,000,000 by default), by bulk inserts of precomputed ledger rows
   whose hash chain is computed by the ledger's own rule (:mod:`consent_widget.hashrule`), so
   the exports verify;
2. exports each campaign with the project's command (``consent-widget ledger export``), each in
   a child process, and prints events per second and the child's peak resident memory;
3. verifies each archive with ``consent-widget ledger verify-export``, also in a child process,
   and prints the same figures;
4. prints the ratio of the large run's peak memory to the small run's: a streaming export and
   verifier keep it near 1 while the campaign grows tenfold.

Run: ``.venv/bin/python bench/bench_export.py`` (``--events N``; ``--quick`` for 20,000
events). Not part of the test suite: figures depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consent_widget import hashrule  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "consent-widget")
#: Events per subject: given, then withdrawn, then given again, then expired.
CYCLE = ("given", "withdrawn", "given", "expired")
CHUNK = 50_000


def cli(env: dict, *args: str) -> str:
    """Run the project's command and return its output."""
    return subprocess.run([CLI, *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def measured(env: dict, *args: str) -> tuple[float, int, str]:
    """Run the command in a child process: (seconds, peak resident memory in MiB, output)."""
    started = time.perf_counter()
    child = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    output = child.stdout.read().decode()
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix all children's peaks.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {output}")
    return seconds, usage.ru_maxrss // 1024, output


def populate(connection: sqlite3.Connection, slug: str, events: int) -> dict:
    """Bulk-insert ``events`` ledger events of campaign ``slug`` with a valid chain."""
    campaign_id = connection.execute("SELECT id FROM campaigns WHERE slug=?",
                                     (slug,)).fetchone()[0]
    notice_id, notice_sha = connection.execute(
        "SELECT id, text_sha256 FROM notices WHERE campaign_id=? ORDER BY id",
        (campaign_id,)).fetchone()
    first_subject = (connection.execute("SELECT coalesce(max(id), 0) FROM subjects")
                     .fetchone()[0]) + 1
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    prev, hashing, inserting = hashrule.GENESIS, 0.0, 0.0
    subjects = -(-events // len(CYCLE))
    began = time.perf_counter()
    connection.executemany(
        "INSERT INTO subjects (id, campaign_id, public_id, email_hmac, email, link_version, "
        "created_at) VALUES (?, ?, ?, ?, NULL, 1, ?)",
        [(first_subject + i, campaign_id, f"sub_{slug}_{i}", f"{slug}{i:060d}",
          start.replace(tzinfo=None).isoformat(sep=" ")) for i in range(subjects)])
    subject_seconds = time.perf_counter() - began
    for offset in range(0, events, CHUNK):
        began = time.perf_counter()
        rows = []
        for seq in range(offset + 1, min(offset + CHUNK, events) + 1):
            index = (seq - 1) % subjects
            moment = start + timedelta(seconds=seq, microseconds=seq % 997 + 1)
            body = {"campaign": slug, "seq": seq, "subject": f"sub_{slug}_{index}",
                    "purpose": "social_matching", "network": "facebook",
                    "type": CYCLE[(seq - 1) // subjects % len(CYCLE)],
                    "occurred_at": moment.isoformat(), "notice_sha256": notice_sha,
                    "signup": None, "method": "bench", "actor": "subject",
                    "origin": "https://example.org", "locale": "en", "prev": prev}
            digest = hashrule.event_hash(body)
            rows.append((campaign_id, seq, first_subject + index, body["purpose"],
                         body["network"], body["type"],
                         moment.replace(tzinfo=None).isoformat(sep=" "), notice_id,
                         body["method"], body["actor"], body["origin"], body["locale"], prev,
                         digest))
            prev = digest
        hashing += time.perf_counter() - began
        began = time.perf_counter()
        connection.executemany(
            "INSERT INTO consent_events (campaign_id, seq, subject_id, purpose, network, type, "
            "occurred_at, notice_id, signup_id, method, actor, origin, locale, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)", rows)
        inserting += time.perf_counter() - began
    connection.execute("UPDATE campaigns SET ledger_seq=?, ledger_head=? WHERE id=?",
                       (events, prev, campaign_id))
    return {"subjects": subject_seconds, "hashing": hashing, "inserting": inserting,
            "head": prev}


def main() -> None:
    """Run the benchmark and print its figures."""
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description="Benchmark of the proof export.")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="a small run (20,000 events)")
    args = parser.parse_args()
    large = 20_000 if args.quick else args.events
    sizes = {"small": max(1, large // 10), "large": large}
    workdir = Path(tempfile.mkdtemp(prefix="consent-export-bench-"))
    database = workdir / "bench.sqlite3"
    env = {**os.environ, "CONSENT_SECRET_KEY": "bench-secret-key-not-for-production",
           "CONSENT_LOOKUP_KEY": "bench-lookup-key",
           "CONSENT_DATABASE_URL": f"sqlite:///{database}",
           "CONSENT_MAIL_URL": f"file://{workdir / 'outbox'}"}
    try:
        cli(env, "db", "upgrade")
        cli(env, "keys", "rotate")
        for slug in sizes:
            cli(env, "campaign", "create", slug, "--name", slug.title(), "--controller",
                "Bench", "--contact-email", "dpo@example.org", "--policy-url",
                "https://example.org/p")
        with sqlite3.connect(database) as connection:
            for slug, events in sizes.items():
                began = time.perf_counter()
                parts = populate(connection, slug, events)
                connection.commit()
                print(f"built {slug} campaign: {events:,} events in "
                      f"{time.perf_counter() - began:.1f} s (subjects "
                      f"{parts['subjects']:.1f} s, rows and hashes {parts['hashing']:.1f} s, "
                      f"event inserts {parts['inserting']:.1f} s)")
        peaks = {}
        for slug, events in sizes.items():
            archive = workdir / f"{slug}.zip"
            seconds, peak, output = measured(env, "ledger", "export", slug, "-o",
                                             str(archive))
            result = json.loads(output)
            assert result["events"] == events, result
            print(f"export {slug:>5}: {events:>9,} events in {seconds:6.1f} s = "
                  f"{events / seconds:8.0f} events/s, peak memory {peak} MiB, archive "
                  f"{archive.stat().st_size / 2**20:.1f} MiB")
            v_seconds, v_peak, v_output = measured(env, "ledger", "verify-export",
                                                   str(archive))
            report = json.loads(v_output)
            assert report["ok"] and report["events"] == events, report
            print(f"verify {slug:>5}: {events:>9,} events in {v_seconds:6.1f} s = "
                  f"{events / v_seconds:8.0f} events/s, peak memory {v_peak} MiB (ok)")
            peaks[slug] = (peak, v_peak)
        ratio = sizes["large"] / sizes["small"]
        print(f"peak memory large/small ({ratio:.0f}x the events): export "
              f"{peaks['large'][0] / peaks['small'][0]:.2f}, verify "
              f"{peaks['large'][1] / peaks['small'][1]:.2f} (flat is near 1.00)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
