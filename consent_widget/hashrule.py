"""The hash rule of the consent ledger, on its own: what an event's SHA-256 covers and how.

Pure Python, no database: the ledger's writer and verifier (:mod:`consent_widget.chain`) and
the proof export's independent verifier (:mod:`consent_widget.proof_verify`) use this one
function, and docs/proof-export.md states it for auditors who write their own.
"""
from __future__ import annotations

import hashlib
import json

#: The fields of an event's canonical form, as they appear in a proof export's events.jsonl.
FIELDS = ("campaign", "seq", "subject", "purpose", "network", "type", "occurred_at",
          "notice_sha256", "signup", "method", "actor", "origin", "locale", "prev")

#: The previous hash of a campaign's first event.
GENESIS = "0" * 64


def canonical(body: dict) -> bytes:
    """The canonical JSON of an event: exactly :data:`FIELDS`, keys sorted, no spaces, UTF-8."""
    return json.dumps({name: body[name] for name in FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(body: dict) -> str:
    """The hex SHA-256 of an event's canonical JSON (``occurred_at`` as an ISO 8601 string)."""
    return hashlib.sha256(canonical(body)).hexdigest()
