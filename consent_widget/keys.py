"""The key ring: Ed25519 keys that sign receipts and decisions, their JWKS, and JWS signing and
verification with the rules RFC 8725 asks for (algorithm pinned, explicit ``typ``, our keys only).
"""
from __future__ import annotations

import json
import re
import time
import weakref
from datetime import datetime
from functools import lru_cache

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import EdDSAAlgorithm
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry
from joserfc.util import json_b64encode, urlsafe_b64encode
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


class NoSigningKey(Exception):
    """No signing key exists yet, and the caller asked not to create one."""


def active_key(session: Session, now: datetime | None = None, *,
               create: bool = True) -> SigningKey:
    """The current signing key (the newest unretired one), created on first use unless
    ``create`` is false, when NoSigningKey is raised instead.

    A key created here is only flushed: the caller's transaction must commit, or the tokens it
    signed will not verify. A caller in a transaction that only reads passes ``create=False``:
    on SQLite such a transaction cannot write once another one has committed since it began.
    """
    key = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))
                          .order_by(SigningKey.created_at.desc()).limit(1)).first()
    if key is not None:
        return key
    if not create:
        raise NoSigningKey()
    return _new_key(session, now or utcnow())


def rotate_key(session: Session, now: datetime | None = None) -> SigningKey:
    """Make a new key current and retire the others, which stay published."""
    now = now or utcnow()
    _signers.pop(session.get_bind(), None)  # this process signs with the new key at once
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
    session.info[_CREATED] = True
    return key


def jwks(session: Session) -> dict:
    """The JSON Web Key Set of every public key, current first, retired ones included."""
    rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))
    return {"keys": [dict(row.public_jwk) for row in rows]}


class _EdDSA(EdDSAAlgorithm):
    # joserfc warns on every use of the ``EdDSA`` name, which RFC 9864 deprecates; we keep the
    # name on purpose (see ALGORITHM). Without the warning there is nothing to silence around
    # each signature, which costs as much as the signature itself.
    security_warning = None


class _Registry(JWSRegistry):
    """joserfc's JWS registry with one algorithm: EdDSA is the only one we sign or accept."""

    algorithms = {ALGORITHM: _EdDSA()}
    recommended = [ALGORITHM]


_REGISTRY = _Registry(algorithms=[ALGORITHM])
_EDDSA = _REGISTRY.get_alg(ALGORITHM)


def canonical_json(value) -> bytes:
    """``value`` as the JSON we sign and digest: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


@lru_cache(maxsize=16)
def _private_key(pem: str) -> OKPKey:
    # Parsing the PEM costs more than signing; a key's PEM never changes, so parse it once.
    key = OKPKey.import_key(pem)
    _EDDSA.check_key(key)  # what serialize_compact checks on every signature, checked once
    return key


@lru_cache(maxsize=64)
def _header_segment(kid: str, typ: str) -> bytes:
    """The encoded protected header of our tokens of kind ``typ`` signed with ``kid``: the same
    few headers sign every token, so each is checked against the registry and encoded once."""
    header = {"alg": ALGORITHM, "kid": kid, "typ": typ}
    _REGISTRY.check_header(header)
    return json_b64encode(header)


def _serialize(kid: str, typ: str, claims: dict | bytes, private_key: OKPKey) -> str:
    """``claims`` as a JWS compact token, the bytes ``jws.serialize_compact`` makes of them;
    given as bytes, they are taken to be their :func:`canonical_json` already.

    joserfc's own steps before the signature (checking the header against the registry,
    finding and checking the key, building the signature object) cost as much as the Ed25519
    signature itself, for a header and key that never change; here the header is checked and
    encoded once (:func:`_header_segment`), the key checked when it is read
    (:func:`_private_key`), and joserfc's EdDSA signs. A test holds the output to joserfc's.
    """
    payload = claims if isinstance(claims, bytes) else canonical_json(claims)
    signing_input = _header_segment(kid, typ) + b"." + urlsafe_b64encode(payload)
    return (signing_input + b"." + urlsafe_b64encode(_EDDSA.sign(signing_input, private_key))
            ).decode("ascii")


def sign(session: Session, claims: dict | bytes, typ: str, *, create_key: bool = True) -> str:
    """Sign ``claims`` (a dict, or its :func:`canonical_json` as bytes) with the current key as
    a JWS compact token of kind ``typ``.

    With ``create_key=False``, raises NoSigningKey rather than create the first key.
    """
    kid, private_key = _current_signer(session, create_key)
    return _serialize(kid, typ, claims, private_key)


#: How long a process signs with the key it last read before reading the ring again. Every API
#: answer is signed, and this read would otherwise be a third of a check's work. After
#: ``keys rotate``, other processes move to the new key within this time; the previous key stays
#: published, so whatever they sign meanwhile still verifies.
SIGNER_TTL = 60.0
#: engine -> (monotonic deadline, kid, private key): one entry per database this process uses.
_signers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Set in a session's ``info`` when it created a key, which is not remembered until committed.
_CREATED = "consent_keys_created"


def sign_cached(engine, claims: dict | bytes, typ: str) -> str | None:
    """Sign ``claims`` as :func:`sign` does if this process read ``engine``'s current key less
    than SIGNER_TTL ago; None if it must be read again (then call :func:`sign`).

    The API signs every answer: this way a check whose signer is known opens no ORM session,
    whose making and closing cost more than the signature.
    """
    signer = _known_signer(engine)
    if signer is None:
        return None
    return _serialize(signer[0], typ, claims, signer[1])


def _known_signer(engine) -> tuple[str, OKPKey] | None:
    """The (kid, key) this process read from ``engine`` less than SIGNER_TTL ago, or None."""
    cached = _signers.get(engine)
    if cached is None or cached[0] <= time.monotonic():
        return None
    return cached[1], cached[2]


def _current_signer(session: Session, create: bool) -> tuple[str, OKPKey]:
    engine = session.get_bind()
    known = _known_signer(engine)
    if known is not None:
        return known
    key = active_key(session, create=create)
    signer = (key.kid, _private_key(key.private_pem))
    # A key this session created may still be rolled back: remembering it could sign tokens
    # with a key that never reached the database.
    if not session.info.get(_CREATED):
        _signers[engine] = (time.monotonic() + SIGNER_TTL, *signer)
    return signer


def verify_signature(session: Session, token: str, typ: str) -> dict:
    """The JSON payload of ``token`` if one of our keys signed it as a ``typ`` token.

    Checks the header (algorithm pinned, ``typ`` exact, no other parameter, a known ``kid``) and
    the signature; the rules of each kind of token are the caller's. Raises InvalidSignature for
    anything else, malformed input included.
    """
    signed = _parse(token)
    public_key = _our_key(session, signed.headers(), typ)
    try:
        genuine = jws.validate_compact(signed, public_key, registry=_REGISTRY)
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
