"""Verify a proof export with nothing but the archive: no database, no settings, no app.

Checks, and reports the first thing wrong with its file and line: the manifest's digest and
line count of every file; each line's JSON; the sequence numbers (1, 2, 3...); each event's
link to the one before and its hash recomputed by the ledger's rule; every notice text against
its SHA-256 and every event's notice among them; every receipt's Ed25519 signature against the
archive's keys and its campaign; the head and counts the manifest states.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from . import hashrule
from .proof_format import EVENTS, FORMAT, JWKS, MANIFEST, NOTICES, RECEIPTS

#: Lines longer than this are not a proof export's (a guard against a hostile archive).
MAX_LINE = 1024 * 1024


@dataclass
class Report:
    """The outcome: ``ok``, the counts and head, or the first bad file and line with why."""

    ok: bool
    events: int = 0
    receipts: int = 0
    head: str = ""
    file: str = ""
    line: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        """What ``ledger verify-export`` prints."""
        if self.ok:
            return {"ok": True, "events": self.events, "receipts": self.receipts,
                    "head": self.head}
        return {"ok": False, "file": self.file, "line": self.line, "reason": self.reason}


class _Bad(Exception):
    def __init__(self, file: str, line: int, reason: str):
        super().__init__(reason)
        self.file, self.line, self.reason = file, line, reason


def _lines(archive: zipfile.ZipFile, name: str, expected: dict):
    """Each (number, object) of a JSON Lines member, checking its digest and count at the end."""
    digest, number = hashlib.sha256(), 0
    with archive.open(name) as handle:
        for raw in iter(lambda: handle.readline(MAX_LINE + 1), b""):
            number += 1
            digest.update(raw)
            if len(raw) > MAX_LINE or not raw.endswith(b"\n"):
                raise _Bad(name, number, "the line is too long or not terminated")
            try:
                value = json.loads(raw)
            except ValueError:
                raise _Bad(name, number, "the line is not JSON") from None
            if not isinstance(value, dict):
                raise _Bad(name, number, "the line is not a JSON object")
            yield number, value
    if number != expected.get("lines"):
        raise _Bad(name, number + 1, f"the manifest counts {expected.get('lines')} lines, the "
                                     f"file has {number}")
    if digest.hexdigest() != expected.get("sha256"):
        raise _Bad(name, 0, "the file's SHA-256 differs from the manifest's")


def _manifest(archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise _Bad(MANIFEST, 0, "the archive has no manifest") from None
    except ValueError:
        raise _Bad(MANIFEST, 1, "the manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Bad(MANIFEST, 1, f"not a {FORMAT} archive")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {EVENTS, RECEIPTS, NOTICES, JWKS}:
        raise _Bad(MANIFEST, 1, "the manifest does not list the archive's files")
    return manifest


def _notices(archive, manifest) -> set[str]:
    known = set()
    for number, notice in _lines(archive, NOTICES, manifest["files"][NOTICES]):
        text = notice.get("text")
        if not isinstance(text, str) or \
                hashlib.sha256(text.encode("utf-8")).hexdigest() != notice.get("text_sha256"):
            raise _Bad(NOTICES, number, "the notice's text does not match its SHA-256")
        known.add(notice["text_sha256"])
    return known


def _events(archive, manifest, known_notices: set[str]) -> tuple[int, str]:
    slug = manifest.get("campaign", {}).get("slug")
    prev, count = hashrule.GENESIS, 0
    for number, event in _lines(archive, EVENTS, manifest["files"][EVENTS]):
        missing = [name for name in hashrule.FIELDS if name not in event]
        if missing or "hash" not in event:
            raise _Bad(EVENTS, number, f"the event lacks {', '.join(missing or ['hash'])}")
        if event["campaign"] != slug:
            raise _Bad(EVENTS, number, "the event belongs to another campaign")
        if event["seq"] != count + 1:
            raise _Bad(EVENTS, number, f"expected sequence number {count + 1}, found "
                                       f"{event['seq']}")
        if event["prev"] != prev:
            raise _Bad(EVENTS, number, "its previous hash is not the hash of the event before")
        if hashrule.event_hash(event) != event["hash"]:
            raise _Bad(EVENTS, number, "its content does not match its hash")
        if event["notice_sha256"] is not None and event["notice_sha256"] not in known_notices:
            raise _Bad(EVENTS, number, "it names a notice text that is not in notices.jsonl")
        prev, count = event["hash"], count + 1
    head = manifest.get("head", {})
    if head.get("seq") != count or head.get("hash") != prev:
        raise _Bad(MANIFEST, 1, f"the manifest's head is event {head.get('seq')}, the chain "
                                f"ends at event {count} with another hash")
    return count, prev


def _keys(archive, manifest) -> KeySet | None:
    data = archive.read(JWKS)
    if hashlib.sha256(data).hexdigest() != manifest["files"][JWKS].get("sha256"):
        raise _Bad(JWKS, 0, "the file's SHA-256 differs from the manifest's")
    try:
        value = json.loads(data)
        if isinstance(value, dict) and value.get("keys") == []:
            # A service that never signed has no key yet: its export has no receipt to verify,
            # and a receipt line with no key fails below, at its own line.
            return None
        return KeySet.import_key_set(value)
    except (ValueError, JoseError, KeyError, TypeError):
        raise _Bad(JWKS, 1, "the key set cannot be read") from None


def _receipts(archive, manifest, key_set: KeySet | None) -> int:
    slug = manifest.get("campaign", {}).get("slug")
    count = 0
    for number, receipt in _lines(archive, RECEIPTS, manifest["files"][RECEIPTS]):
        if key_set is None:
            raise _Bad(RECEIPTS, number, "the archive has no key to verify the receipt with")
        try:
            token = jws.deserialize_compact(str(receipt.get("jws", "")), key_set,
                                            algorithms=["EdDSA"])
            claims = json.loads(token.payload)
        except (JoseError, ValueError, TypeError):
            raise _Bad(RECEIPTS, number, "the receipt's signature does not verify with the "
                                         "archive's keys") from None
        if claims.get("jti") != receipt.get("id") or \
                (claims.get("ext") or {}).get("campaign") != slug or \
                claims.get("sub") != receipt.get("subject"):
            raise _Bad(RECEIPTS, number, "the signed receipt names another id, subject or "
                                         "campaign than its line")
        count += 1
    return count


def verify_export(path) -> Report:
    """Verify the proof export at ``path``; the report names the first bad file and line."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _manifest(archive)
            known = _notices(archive, manifest)
            events, head = _events(archive, manifest, known)
            receipts = _receipts(archive, manifest, _keys(archive, manifest))
            counts = manifest.get("counts", {})
            if counts.get("events") != events or counts.get("receipts") != receipts:
                raise _Bad(MANIFEST, 1, "the manifest's counts differ from the files'")
    except _Bad as bad:
        return Report(ok=False, file=bad.file, line=bad.line, reason=bad.reason)
    except KeyError as exc:
        return Report(ok=False, file=str(exc).strip("'\""), line=0,
                      reason="a file the manifest lists is missing from the archive")
    except (zipfile.BadZipFile, OSError) as exc:
        return Report(ok=False, file=str(path), line=0, reason=f"not a readable ZIP: {exc}")
    return Report(ok=True, events=events, receipts=receipts, head=head)
