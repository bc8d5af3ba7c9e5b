"""A campaign's proof export: its whole ledger, notices, receipts and public keys in one ZIP of
JSON Lines files and a manifest, which an auditor verifies with nothing but the archive
(docs/proof-export.md; :mod:`consent_widget.proof_verify` is our own verifier).

The export streams: events are read in chunks through a server-side cursor and written line by
line into the archive, so memory stays flat however large the campaign. It holds only what the
ledger holds, public ids and hashes, never a supporter's email address.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from typing import Callable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from . import hashrule, keys
from .proof_format import EVENTS, FORMAT, JWKS, MANIFEST, NOTICES, RECEIPTS, VERSION
from .models import Campaign, ConsentEvent, Notice, Receipt, Signup, Subject, utcnow

#: Rows read per round trip, and how often progress is reported.
CHUNK = 5000


class _Member:
    """One file of the archive being written, with its running SHA-256 and line count."""

    def __init__(self, archive: zipfile.ZipFile, name: str):
        self.name = name
        self.handle = archive.open(name, "w", force_zip64=True)
        self.digest = hashlib.sha256()
        self.lines = 0

    def line(self, value) -> None:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          sort_keys=True).encode("utf-8") + b"\n"
        self.write(data)
        self.lines += 1

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.handle.write(data)

    def close(self) -> dict:
        self.handle.close()
        return {"sha256": self.digest.hexdigest(), "lines": self.lines}


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _events_query(campaign: Campaign):
    notice, signup = aliased(Notice), aliased(Signup)
    return (select(ConsentEvent.seq, ConsentEvent.purpose, ConsentEvent.network,
                   ConsentEvent.type, ConsentEvent.occurred_at, ConsentEvent.method,
                   ConsentEvent.actor, ConsentEvent.origin, ConsentEvent.locale,
                   ConsentEvent.prev_hash, ConsentEvent.hash, Subject.public_id,
                   notice.text_sha256, notice.purpose, notice.network, notice.locale,
                   notice.version, signup.public_id, Receipt.id)
            .join(Subject, Subject.id == ConsentEvent.subject_id)
            .outerjoin(notice, notice.id == ConsentEvent.notice_id)
            .outerjoin(signup, signup.id == ConsentEvent.signup_id)
            # A receipt is issued in the transaction and at the instant of the events it records.
            .outerjoin(Receipt, and_(Receipt.subject_id == ConsentEvent.subject_id,
                                     Receipt.campaign_id == ConsentEvent.campaign_id,
                                     Receipt.issued_at == ConsentEvent.occurred_at))
            .where(ConsentEvent.campaign_id == campaign.id)
            .order_by(ConsentEvent.seq)
            .execution_options(yield_per=CHUNK))


def _write_events(session: Session, campaign: Campaign, member: _Member, total: int,
                  progress: Callable[[int, int], None] | None) -> tuple[int, str]:
    head, count, last_seq = hashrule.GENESIS, 0, None
    for (seq, purpose, network, type_, occurred_at, method, actor, origin, locale, prev, digest,
         subject, notice_sha, n_purpose, n_network, n_locale, n_version, signup,
         receipt_id) in session.execute(_events_query(campaign)):
        if seq == last_seq:
            continue  # two receipts at one instant would repeat the event: keep the first
        last_seq = seq
        member.line({
            "campaign": campaign.slug, "seq": seq, "subject": subject, "purpose": purpose,
            "network": network, "type": type_, "occurred_at": occurred_at.isoformat(),
            "notice_sha256": notice_sha, "signup": signup, "method": method, "actor": actor,
            "origin": origin, "locale": locale, "prev": prev, "hash": digest,
            "notice": ({"purpose": n_purpose, "network": n_network, "locale": n_locale,
                        "version": n_version} if notice_sha is not None else None),
            "receipt_id": receipt_id})
        head, count = digest, count + 1
        if progress is not None and count % CHUNK == 0:
            progress(count, total)
    return count, head


def write_export(session: Session, campaign: Campaign, fileobj,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the campaign's proof export as a ZIP into ``fileobj``; return
    ``{"events", "receipts", "head"}``. ``progress(done, total)`` is called every few
    thousand events."""
    total = session.scalar(select(func.count()).select_from(ConsentEvent).where(
        ConsentEvent.campaign_id == campaign.id)) or 0
    files = {}
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        events = _Member(archive, EVENTS)
        count, head = _write_events(session, campaign, events, total, progress)
        files[EVENTS] = events.close()

        receipts = _Member(archive, RECEIPTS)
        for receipt_id, subject, issued_at, supersedes, kid, token in session.execute(
                select(Receipt.id, Subject.public_id, Receipt.issued_at, Receipt.supersedes,
                       Receipt.kid, Receipt.jws)
                .join(Subject, Subject.id == Receipt.subject_id)
                .where(Receipt.campaign_id == campaign.id)
                .order_by(Receipt.issued_at, Receipt.id).execution_options(yield_per=CHUNK)):
            receipts.line({"id": receipt_id, "subject": subject, "issued_at": _iso(issued_at),
                           "supersedes": supersedes, "kid": kid, "jws": token})
        files[RECEIPTS] = receipts.close()

        notices = _Member(archive, NOTICES)
        for row in session.scalars(select(Notice).where(Notice.campaign_id == campaign.id)
                                   .order_by(Notice.id)):
            notices.line({"purpose": row.purpose, "network": row.network, "locale": row.locale,
                          "version": row.version, "text": row.text,
                          "text_sha256": row.text_sha256, "created_at": _iso(row.created_at)})
        files[NOTICES] = notices.close()

        jwks = _Member(archive, JWKS)
        jwks.write(json.dumps(keys.jwks(session), indent=2, sort_keys=True).encode("utf-8"))
        files[JWKS] = jwks.close()

        manifest = {
            "format": FORMAT, "version": VERSION, "generated_at": _iso(utcnow()),
            "campaign": {"slug": campaign.slug, "name": campaign.name,
                         "controller": campaign.controller},
            "counts": {"events": count, "receipts": files[RECEIPTS]["lines"],
                       "notices": files[NOTICES]["lines"]},
            "head": {"seq": count, "hash": head},
            "files": files,
            "hash_rule": "sha256 of the event's canonical JSON: the fields campaign, seq, "
                         "subject, purpose, network, type, occurred_at, notice_sha256, signup, "
                         "method, actor, origin, locale, prev; keys sorted, no whitespace, "
                         "UTF-8; prev is the previous event's hash, 64 zeros for the first.",
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True,
                                              ensure_ascii=False))
    if progress is not None:
        progress(count, total)
    return {"events": count, "receipts": files[RECEIPTS]["lines"], "head": head}
