"""The proof export and its independent verifier: an export of real signups, confirmations,
withdrawals and an erasure verifies; every kind of tampering is caught at the first bad line;
the verifier needs no database, no settings and no app."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from consent_widget import hashrule, proof_verify
from consent_widget.campaigns import create_campaign
from consent_widget import db

from conftest import run_json
from helpers import give, sign_up, withdraw

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exported(app, runner, campaign, tmp_path):
    """An export of demo after four people's journeys, and another campaign's activity."""
    give(app, "demo", "ana@marie2027.test", newsletter=True, networks=["facebook"])
    give(app, "demo", "bob@marie2027.test", newsletter=True, networks=["linkedin"])
    sign_up(app, "demo", "cleo@marie2027.test", newsletter=True)
    withdraw(app, "demo", "bob@marie2027.test", "social_matching", "linkedin")
    run_json(runner, "subject", "erase", "ana@marie2027.test", "--campaign", "demo")
    with app.app_context():
        with db.transaction() as session:
            create_campaign(session, "other", name="Other", controller="Other",
                            contact_email="dpo@other.test", policy_url="https://other.test/p")
    give(app, "other", "eve@other.test", newsletter=True)
    path = tmp_path / "demo.zip"
    result = run_json(runner, "ledger", "export", "demo", "-o", str(path))
    assert result["file"] == str(path) and result["events"] > 10 and result["receipts"] >= 3
    return path, result


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, target: Path, members: dict[str, bytes], *, fix_manifest=False):
    """Write ``members`` as a new archive; optionally with a manifest recomputed to match."""
    if fix_manifest:
        manifest = json.loads(members["manifest.json"])
        for name in manifest["files"]:
            manifest["files"][name]["sha256"] = hashlib.sha256(members[name]).hexdigest()
            if name.endswith(".jsonl"):
                manifest["files"][name]["lines"] = members[name].count(b"\n")
        members = {**members, "manifest.json": json.dumps(manifest).encode()}
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def _lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def _jsonl(values: list[dict]) -> bytes:
    return b"".join(json.dumps(v, separators=(",", ":"), sort_keys=True,
                               ensure_ascii=False).encode() + b"\n" for v in values)


def test_an_export_verifies_and_holds_the_whole_ledger_and_no_address(app, runner, exported):
    path, result = exported
    verified = run_json(runner, "ledger", "verify-export", str(path))
    assert verified == {"ok": True, "events": result["events"],
                        "receipts": result["receipts"], "head": result["head"]}
    members = _members(path)
    assert set(members) == {"events.jsonl", "receipts.jsonl", "notices.jsonl", "jwks.json",
                            "manifest.json"}
    events = _lines(members["events.jsonl"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["campaign"] for e in events} == {"demo"}
    assert {e["type"] for e in events} >= {"requested", "given", "withdrawn"}
    assert any(e["receipt_id"] for e in events) and all(e["notice"] for e in events
                                                        if e["notice_sha256"])
    # The head is the ledger's own, as `ledger verify` says.
    assert run_json(runner, "ledger", "verify", "demo")["head"] == result["head"]
    everything = b"".join(members.values())
    for email in (b"ana@marie2027.test", b"bob@marie2027.test", b"cleo@marie2027.test",
                  b"eve@other.test"):
        assert email not in everything


def _expect(path, file, line, fragment=""):
    report = proof_verify.verify_export(path)
    assert not report.ok
    assert (report.file, report.line) == (file, line), report
    assert fragment in report.reason, report.reason


def test_a_changed_field_is_caught_at_its_line(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    events = _lines(members["events.jsonl"])
    events[4]["type"] = "given" if events[4]["type"] != "given" else "refused"
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "events.jsonl": _jsonl(events)},
                   fix_manifest=True)
    _expect(bad, "events.jsonl", 5, "does not match its hash")


def test_a_change_with_its_hash_recomputed_breaks_the_next_link(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    events = _lines(members["events.jsonl"])
    events[2]["origin"] = "https://forged.test"
    events[2]["hash"] = hashrule.event_hash(events[2])
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "events.jsonl": _jsonl(events)},
                   fix_manifest=True)
    _expect(bad, "events.jsonl", 4, "previous hash")


def test_a_recomputed_tail_is_caught_by_the_manifest_head(exported, tmp_path):
    """Rewriting every hash after a change (a "reimported" ledger) still differs from the
    head the manifest states."""
    path, _ = exported
    members = _members(path)
    events = _lines(members["events.jsonl"])
    events[-3]["method"] = "forged"
    prev = events[-4]["hash"]
    for event in events[-3:]:
        event["prev"] = prev
        event["hash"] = prev = hashrule.event_hash(event)
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "events.jsonl": _jsonl(events)},
                   fix_manifest=True)
    _expect(bad, "manifest.json", 1, "head")


def test_a_deleted_or_reordered_line_is_caught(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    events = _lines(members["events.jsonl"])
    deleted = _rewrite(path, tmp_path / "deleted.zip",
                       {**members, "events.jsonl": _jsonl(events[:6] + events[7:])},
                       fix_manifest=True)
    _expect(deleted, "events.jsonl", 7, "sequence")
    swapped = events[:]
    swapped[3], swapped[4] = swapped[4], swapped[3]
    reordered = _rewrite(path, tmp_path / "reordered.zip",
                         {**members, "events.jsonl": _jsonl(swapped)}, fix_manifest=True)
    _expect(reordered, "events.jsonl", 4, "sequence")


def test_an_edited_notice_text_is_caught(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    notices = _lines(members["notices.jsonl"])
    notices[1]["text"] += " And your friends' profiles too."
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "notices.jsonl": _jsonl(notices)},
                   fix_manifest=True)
    _expect(bad, "notices.jsonl", 2, "SHA-256")


def test_a_forged_receipt_signature_is_caught(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    receipts = _lines(members["receipts.jsonl"])
    head, payload, signature = receipts[1]["jws"].split(".")
    receipts[1]["jws"] = ".".join([head, payload, signature[:-4] + ("AAAA" if signature[-4:]
                                                                    != "AAAA" else "BBBB")])
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "receipts.jsonl": _jsonl(receipts)},
                   fix_manifest=True)
    _expect(bad, "receipts.jsonl", 2, "signature")


def test_a_changed_file_under_the_old_manifest_is_caught_by_its_digest(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    receipts = members["receipts.jsonl"].replace(b'"supersedes":null', b'"supersedes":"x"', 1)
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "receipts.jsonl": receipts})
    _expect(bad, "receipts.jsonl", 0, "SHA-256")


def test_the_verifier_runs_with_no_configuration_at_all(exported, tmp_path):
    path, result = exported
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CONSENT_",
                                                                                  "FLASK_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "consent_widget.cli", "ledger",
                           "verify-export", str(path)], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["head"] == result["head"]
    assert not (empty / "instance").exists()
    broken = _rewrite(path, tmp_path / "bad.zip", {**_members(path), "jwks.json": b"{}"})
    failed = subprocess.run([sys.executable, "-m", "consent_widget.cli", "ledger",
                             "verify-export", str(broken)], cwd=empty, env=env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and json.loads(failed.stdout)["file"] == "jwks.json"
    not_zip = empty / "notes.txt"
    not_zip.write_text("hello")
    refused = subprocess.run([sys.executable, "-m", "consent_widget.cli", "ledger",
                              "verify-export", str(not_zip)], cwd=empty, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr


def test_an_unknown_campaign_leaves_no_file(app, runner, campaign, tmp_path):
    target = tmp_path / "x.zip"
    result = runner.invoke(__import__("consent_widget.cli", fromlist=["main"]).main,
                           ["ledger", "export", "nope", "-o", str(target)])
    assert result.exit_code != 0 and not target.exists()
    assert not (tmp_path / "x.zip.part").exists()


def test_a_campaign_before_any_signing_key_exports_and_verifies(app, runner, campaign, tmp_path):
    path = tmp_path / "empty.zip"
    result = run_json(runner, "ledger", "export", "demo", "-o", str(path))
    assert result["events"] == 0 and result["receipts"] == 0
    assert json.loads(_members(path)["jwks.json"]) == {"keys": []}
    report = proof_verify.verify_export(path)
    assert report.ok and report.events == 0 and report.head == hashrule.GENESIS


def test_receipts_with_their_keys_removed_are_caught_at_the_first_receipt(exported, tmp_path):
    path, _ = exported
    members = _members(path)
    bad = _rewrite(path, tmp_path / "bad.zip", {**members, "jwks.json": b'{"keys": []}'},
                   fix_manifest=True)
    _expect(bad, "receipts.jsonl", 1, "no key")


def _read_all(fd: int) -> bytes:
    """Everything written to a pseudo-terminal until its other end is closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other end closed (Linux answers EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_export_shows_its_progress_on_stderr_and_keeps_stdout_and_the_file_clean(
        app, runner, campaign, tmp_path):
    import pty
    for n in range(3):
        give(app, "demo", f"p{n}@marie2027.test", newsletter=True)
    path = tmp_path / "demo.zip"
    # The command as a person runs it: stderr a terminal (where the bar is drawn), stdout a
    # pipe (the JSON a script reads), in a directory with no instance settings.
    controller, terminal = pty.openpty()
    env = {**os.environ, "CONSENT_DATABASE_URL": app.config["DATABASE_URL"],
           "CONSENT_SECRET_KEY": app.config["SECRET_KEY"], "COLUMNS": "80"}
    process = subprocess.Popen(
        [sys.executable, "-m", "consent_widget.cli", "ledger", "export", "demo", "-o", str(path)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = _read_all(controller).decode("utf-8", "replace")
    os.close(controller)
    stdout = process.stdout.read()
    assert process.wait(timeout=120) == 0, shown
    # A bar with its label and its end (100%) on the terminal...
    assert "events" in shown and "100%" in shown, shown
    # ... and none of it in what the command prints, nor in the archive.
    result = json.loads(stdout)
    assert result["file"] == str(path) and result["events"] > 0
    assert b"100%" not in stdout and b"events [" not in stdout
    verified = run_json(runner, "ledger", "verify-export", str(path))
    assert verified["ok"] is True
    assert all(b"100%" not in data for data in _members(path).values())
