"""Many consent questions at once: the batch check and the purge audit read the state here.

A batch of up to :data:`MAX_ENTRIES` emails or subject ids is answered with one query per chunk
of :data:`CHUNK` entries (:func:`consent_widget.state.lookup`, the statement a single check
uses), never one query per entry, so a batch and single checks always agree.
"""
from __future__ import annotations

import re

import email_validator
from sqlalchemy.orm import Session

from . import state
from .emails import MAX_EMAIL_LENGTH, lookup_hasher, normalise
from .models import utcnow
from .state import StateView

MAX_ENTRIES = 10_000
#: Entries per query: well under SQLite's (32,766) and PostgreSQL's (65,535) limits on bound
#: parameters, and large enough that a 10,000-entry batch takes five round trips.
CHUNK = 2000

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: Plain ASCII addresses, which are almost all of them. For these, :func:`normalise` only trims
#: and lower-cases the domain, which this module does ~10 times faster than email-validator;
#: anything else (Unicode, IDNA labels, quoted local parts, odd TLDs) goes through normalise().
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")


def normalise_fast(address: str) -> str:
    """Exactly :func:`consent_widget.emails.normalise`, faster for plain ASCII addresses.

    Raises :class:`~consent_widget.emails.InvalidEmail` like it.
    """
    trimmed = address.strip() if isinstance(address, str) else address
    match = _PLAIN_ADDRESS.fullmatch(trimmed) if isinstance(trimmed, str) else None
    if match is None or len(trimmed) > MAX_EMAIL_LENGTH or len(match.group(1)) > 64:
        return normalise(address)
    domain = match.group(2).lower()
    labels = domain.split(".")
    if "--" in domain or labels[-1] in email_validator.SPECIAL_USE_DOMAIN_NAMES \
            or len(domain) > 253:
        return normalise(address)
    return f"{match.group(1)}@{domain}"


def _lookup(session: Session, campaign_id: int, purpose: str, network: str, by: str,
            keys: list[str]) -> list[StateView]:
    found: dict[str, StateView] = {}
    now = utcnow()
    for start in range(0, len(keys), CHUNK):
        chunk = sorted(set(keys[start:start + CHUNK]))
        found.update(state.lookup(session, campaign_id, purpose, network, now=now,
                                  **{by: chunk}))
    unknown = StateView(status="unknown")
    return [found.get(key, unknown) for key in keys]


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
