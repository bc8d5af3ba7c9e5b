"""Email addresses: validation, normalisation and the keyed hash used to look supporters up.

An unkeyed SHA-256 of an address is reversible by dictionary, so lookups use HMAC-SHA256 with a
secret key. Normalisation follows the standards: trim, Unicode NFC, domain to its IDNA A-label and
lower case; the local part is lower-cased only inside the hash (mailbox names are case-sensitive
in theory, so the stored address keeps its case), and neither ``+tags`` nor dots are stripped.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata

import email_validator
from email_validator import EmailNotValidError, validate_email

#: RFC 5321 limits a forward path to 256 octets including the angle brackets.
MAX_EMAIL_LENGTH = 254


class InvalidEmail(ValueError):
    """The address is not one we can write to; the message says why, for the person."""


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: Plain ASCII addresses, which are almost all of them. For these, normalising only trims and
#: lower-cases the domain, which takes a twentieth of email-validator's time; anything else
#: (Unicode, IDNA labels, quoted local parts, odd top-level domains) goes to email-validator.
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@((?:{_LABEL}\.)+([A-Za-z]{{2,63}}))")


def normalise(address: str) -> str:
    """Return the address trimmed, NFC-normalised, with an IDNA A-label, lower-case domain.

    Raises :class:`InvalidEmail` for anything that is not a deliverable-looking address.
    """
    return _plain(address) or _validated(address)


def _plain(address) -> str | None:
    """The normalised form of a plain ASCII address, or None to let email-validator decide.

    Gives exactly what :func:`_validated` gives for every address it accepts (a test holds
    the two together); it never refuses one.
    """
    if not isinstance(address, str):
        return None
    trimmed = address.strip()
    match = _PLAIN_ADDRESS.fullmatch(trimmed)
    if match is None or len(trimmed) > MAX_EMAIL_LENGTH:
        return None
    local, domain, top_level = match.groups()
    if len(local) > 64 or "--" in domain or len(domain) > 253 \
            or top_level.lower() in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        return None
    # Most addresses already have a lower-case domain: then the trimmed text is the answer.
    lower = domain.lower()
    return trimmed if lower == domain else f"{local}@{lower}"


def _validated(address: str) -> str:
    address = unicodedata.normalize("NFC", (address or "").strip())
    if not address:
        raise InvalidEmail("An email address is required.")
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidEmail("This email address is too long.")
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    domain = result.ascii_domain or result.domain
    return f"{result.local_part}@{domain.lower()}"


def lookup_hmac(key: bytes, normalised: str) -> str:
    """Return the hex HMAC-SHA256 under ``key`` of a normalised address, local part lower-cased."""
    return _hasher_of(key)(normalised)


#: HMAC's inner and outer pads (RFC 2104), as translation tables of the key's bytes.
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))
_SHA256_BLOCK = 64


def lookup_hasher(key: bytes):
    """:func:`lookup_hmac` under ``key`` as a function of the address alone.

    HMAC-SHA256 built as RFC 2104 defines it, from two SHA-256 states that absorb the padded
    key once and are copied for each address: ``hmac.HMAC.copy()`` wraps each copy in a new
    Python object, which cost as much as the hashing itself over the 10,000 addresses of a
    batch, where hashlib's copies are plain C. A test holds it to :func:`hmac.new`.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner, outer = (hashlib.sha256(key.translate(_INNER_PAD)).copy,
                    hashlib.sha256(key.translate(_OUTER_PAD)).copy)

    def digest(normalised: str) -> str:
        local, _, domain = normalised.rpartition("@")
        hashed = inner()
        hashed.update(f"{local.lower()}@{domain}".encode("utf-8"))
        mac = outer()
        mac.update(hashed.digest())
        return mac.hexdigest()

    return digest


@functools.lru_cache(maxsize=8)
def _hasher_of(key: bytes):
    # The check hashes one address per request with the one key of the app: its two padded
    # states are made once, not on every check.
    return lookup_hasher(key)


def plain_digest(normalised: str) -> str:
    """SHA-256 of the normalised address, lower-cased: binds a decision to the platform's input."""
    local, _, domain = normalised.rpartition("@")
    return hashlib.sha256(f"{local.lower()}@{domain}".encode("utf-8")).hexdigest()


def lookup_key(config) -> bytes:
    """The HMAC key from the configuration, derived from the secret key when none is set."""
    key = config.get("LOOKUP_KEY")
    if key:
        return key.encode("utf-8") if isinstance(key, str) else key
    secret = config["SECRET_KEY"]
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(secret, b"consent_widget email lookup key v1", hashlib.sha256).digest()
