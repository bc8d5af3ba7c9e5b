"""Many consent questions at once: the batch check and the purge audit read the state here.

A batch of up to :data:`MAX_ENTRIES` emails or subject ids is answered with one query per chunk
of :data:`CHUNK` entries (:func:`consent_widget.state.lookup`, the statement a single check
uses), never one query per entry, so a batch and single checks always agree.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from . import state
from .emails import lookup_hasher
from .models import utcnow
from .state import StateView

MAX_ENTRIES = 10_000
#: Entries per query. SQLite and PostgreSQL get a chunk's keys as one parameter (see
#: state.lookup); a database given a parameter per key needs chunks well under SQLite's
#: (32,766) and PostgreSQL's (65,535) limits on them. A 10,000-entry batch takes five round
#: trips; one query of 10,000 keys was measured no faster on SQLite.
CHUNK = 2000


def _lookup(session: Session, campaign_id: int, purpose: str, network: str, by: str,
            keys: list[str]) -> list[StateView]:
    found: dict[str, StateView] = {}
    now = utcnow()
    for start in range(0, len(keys), CHUNK):
        chunk = sorted(set(keys[start:start + CHUNK]))
        found.update(state.lookup(session, campaign_id, purpose, network, now=now,
                                  **{by: chunk}))
    return [found.get(key, state.UNKNOWN) for key in keys]


def states_by_email(session: Session, campaign_id: int, purpose: str, network: str,
                    addresses: list[str], key: bytes) -> list[StateView]:
    """The state of each normalised address, in order (``unknown`` for strangers)."""
    digest = lookup_hasher(key)
    hmacs = [digest(address) for address in addresses]
    return _lookup(session, campaign_id, purpose, network, "email_hmacs", hmacs)


def states_by_subject(session: Session, campaign_id: int, purpose: str, network: str,
                      public_ids: list[str]) -> list[StateView]:
    """The state of each subject id, in order (``unknown`` for ids of no subject here)."""
    return _lookup(session, campaign_id, purpose, network, "public_ids", public_ids)
