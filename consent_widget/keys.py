"""The key ring: Ed25519 keys that sign receipts and decisions, their JWKS, and JWS signing and
verification with the rules RFC 8725 asks for (algorithm pinned, explicit ``typ``, our keys only).
"""
from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from functools import lru_cache
from datetime import datetime

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import OKPKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import SigningKey, utcnow

#: "EdDSA", not RFC 9864's "Ed25519": most verifiers, PyJWT included, do not accept the new name.
ALGORITHM = "EdDSA"
#: Our tokens are a few kilobytes; anything far larger is refused before it is parsed.
MAX_TOKEN_LENGTH = 64 * 1024
_HEADER_PARAMETERS = {"alg", "kid", "typ"}
#: Our kids are RFC 7638 thumbprints; anything else is refused before it reaches the database.
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidSignature(Exception):
    """The token is not a genuine, valid token of the expected kind; the message says why."""



def active_key(session: Session, now: datetime | None = None) -> SigningKey:
    """The current signing key (the newest unretired one), created on first use.

    A key created here is only flushed: the caller's transaction must commit, or the tokens it
    signed will not verify.
    """
    key = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))
                          .order_by(SigningKey.created_at.desc()).limit(1)).first()
    return key if key is not None else _new_key(session, now or utcnow())


def rotate_key(session: Session, now: datetime | None = None) -> SigningKey:
    """Make a new key current and retire the others, which stay published."""
    now = now or utcnow()
    for key in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        key.retired_at = now
    return _new_key(session, now)


def _new_key(session: Session, now: datetime) -> SigningKey:
    pair = OKPKey.generate_key("Ed25519")
    # The RFC 7638 thumbprint names exactly this public key, so a kid can never be reused.
    kid = pair.thumbprint()
    public = dict(pair.as_dict(private=False), kid=kid, use="sig", alg=ALGORITHM)
    key = SigningKey(kid=kid, private_pem=pair.as_pem(private=True).decode("ascii"),
                     public_jwk=public, created_at=now)
    session.add(key)
    session.flush()
    return key


def jwks(session: Session) -> dict:
    """The JSON Web Key Set of every public key, current first, retired ones included."""
    rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))
    return {"keys": [dict(row.public_jwk) for row in rows]}


@contextmanager
def _eddsa_allowed():
    """Silence joserfc's warning that RFC 9864 deprecates the ``EdDSA`` algorithm name.

    We keep ``EdDSA`` on purpose (see ALGORITHM). Only that one message is ignored, so if another
    thread races the process-wide filter list (catch_warnings is not thread-safe), the worst
    outcome is that this same warning shows, or stays hidden.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        yield


def _canonical_json(claims: dict) -> bytes:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


@lru_cache(maxsize=16)
def _private_key(pem: str) -> OKPKey:
    # Parsing the PEM costs more than signing; a key's PEM never changes, so parse it once.
    return OKPKey.import_key(pem)


def sign_with(key: SigningKey, claims: dict, typ: str) -> str:
    """Sign ``claims`` with ``key`` as a JWS compact token of kind ``typ``."""
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": typ}
    with _eddsa_allowed():
        return jws.serialize_compact(header, _canonical_json(claims),
                                     _private_key(key.private_pem), algorithms=[ALGORITHM])


def sign(session: Session, claims: dict, typ: str) -> str:
    """Sign ``claims`` with the current key as a JWS compact token of kind ``typ``."""
    return sign_with(active_key(session), claims, typ)


def verify_signature(session: Session, token: str, typ: str) -> dict:
    """The JSON payload of ``token`` if one of our keys signed it as a ``typ`` token.

    Checks the header (algorithm pinned, ``typ`` exact, no other parameter, a known ``kid``) and
    the signature; the rules of each kind of token are the caller's. Raises InvalidSignature for
    anything else, malformed input included.
    """
    signed = _parse(token)
    public_key = _our_key(session, signed.headers(), typ)
    try:
        with _eddsa_allowed():
            genuine = jws.validate_compact(signed, public_key, algorithms=[ALGORITHM])
    except (JoseError, ValueError):
        genuine = False
    if not genuine:
        raise InvalidSignature("the signature does not match the token")
    return _payload_object(signed.payload)


def _parse(token) -> jws.CompactSignature:
    if not isinstance(token, str) or not token:
        raise InvalidSignature("a token must be a non-empty string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidSignature(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    try:
        return jws.extract_compact(token.encode("ascii"))
    except (JoseError, ValueError):
        raise InvalidSignature("the token is not a JWS in compact serialization") from None


def _our_key(session: Session, header, typ: str) -> OKPKey:
    """The public key the header names, after checking that the header is exactly ours."""
    if not isinstance(header, dict):
        raise InvalidSignature("the token's header is not a JSON object")
    if header.get("alg") != ALGORITHM:
        raise InvalidSignature(f"algorithm {header.get('alg')!r} is not accepted, only EdDSA")
    if header.get("typ") != typ:
        raise InvalidSignature(f"expected a {typ} token, got typ {header.get('typ')!r}")
    # Our tokens carry no other parameter; refusing them all means jku, x5u, jwk, crit or b64
    # can never make us fetch a key, trust an embedded one, or change what is signed.
    unexpected = sorted(set(header) - _HEADER_PARAMETERS)
    if unexpected:
        raise InvalidSignature(f"unexpected header parameters: {', '.join(unexpected)}")
    kid = header.get("kid")
    row = session.get(SigningKey, kid) if isinstance(kid, str) and _KID.fullmatch(kid) else None
    if row is None:
        raise InvalidSignature("the token's key id is not one of our keys")
    return OKPKey.import_key(row.public_jwk)


def _payload_object(payload: bytes) -> dict:
    try:
        claims = json.loads(payload)
    except ValueError:
        raise InvalidSignature("the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise InvalidSignature("the payload is not a JSON object")
    return claims
