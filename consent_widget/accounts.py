"""The console's accounts: people, their roles in campaigns, passwords, second factors, and the
signed links that set a password or accept an invitation.

Free of Flask's request: the console's views and the ``admin`` commands both call it. Links are
itsdangerous tokens signed with the service's secret; a set-password link carries a fingerprint
of the account's current password hash, and an invitation link its invitation's id, so a link
works once: setting the password changes the hash, accepting an invitation marks it accepted.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import gettext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from .emails import InvalidEmail, normalise
from .models import (OWNER, ROLES, AdminUser, Campaign, Invitation, Membership, utcnow)

#: argon2id with the library's defaults (RFC 9106's second recommended option).
_hasher = PasswordHasher()
#: A hash to check against when the account does not exist, so that a wrong address takes as
#: long as a wrong password and the login page does not tell which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MAX_PASSWORD_LENGTH = 256
RECOVERY_CODES = 10
_SET_PASSWORD_SALT = "consent_widget admin set-password v1"
_INVITATION_SALT = "consent_widget admin invitation v1"


class AccountError(ValueError):
    """A request about an account cannot be done; the message says why, for the person."""


# --- people and roles ----------------------------------------------------------------------
def user_by_email(session: Session, email: str) -> AdminUser | None:
    """The account of ``email`` (normalised), or None."""
    try:
        address = normalise(email)
    except InvalidEmail:
        return None
    return session.scalars(select(AdminUser).where(AdminUser.email == address.lower())).first()


def create_user(session: Session, email: str, *, operator: bool = False) -> AdminUser:
    """A new account without a password (its set-password link gives it one); flushed."""
    try:
        address = normalise(email).lower()
    except InvalidEmail as exc:
        raise AccountError(str(exc)) from None
    if user_by_email(session, address) is not None:
        raise AccountError(gettext("An account for %(email)s exists already.", email=address))
    user = AdminUser(email=address, is_operator=operator, session_epoch=1, recovery_codes=[],
                     created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def memberships(session: Session, user: AdminUser) -> list[Membership]:
    """The user's roles, by campaign name."""
    return list(session.scalars(select(Membership).join(Campaign)
                                .where(Membership.user_id == user.id).order_by(Campaign.name)))


def membership(session: Session, user: AdminUser, campaign: Campaign) -> Membership | None:
    """The user's role in ``campaign``, or None when they have none."""
    return session.scalars(select(Membership).where(Membership.user_id == user.id,
                                                    Membership.campaign_id == campaign.id)).first()


def team(session: Session, campaign: Campaign) -> list[Membership]:
    """The campaign's members, by email."""
    return list(session.scalars(select(Membership).join(AdminUser)
                                .where(Membership.campaign_id == campaign.id)
                                .order_by(AdminUser.email)))


def grant(session: Session, user: AdminUser, campaign: Campaign, role: str) -> Membership:
    """Give ``user`` ``role`` in ``campaign`` (replacing the role they had); flushed."""
    if role not in ROLES:
        raise AccountError(gettext("The role must be one of %(roles)s.", roles=", ".join(ROLES)))
    member = membership(session, user, campaign)
    if member is None:
        member = Membership(user_id=user.id, campaign_id=campaign.id, role=role,
                            created_at=utcnow())
        session.add(member)
    else:
        if member.role == OWNER and role != OWNER and _owners(session, campaign) == 1:
            raise AccountError(gettext("A campaign keeps at least one owner."))
        member.role = role
    session.flush()
    return member


def remove_member(session: Session, member: Membership) -> None:
    """Take a person out of a campaign; its last owner cannot be removed."""
    if member.role == OWNER and _owners(session, member.campaign) == 1:
        raise AccountError(gettext("A campaign keeps at least one owner."))
    session.delete(member)
    session.flush()


def _owners(session: Session, campaign: Campaign) -> int:
    return len(session.scalars(select(Membership.id).where(
        Membership.campaign_id == campaign.id, Membership.role == OWNER)).all())


# --- passwords -----------------------------------------------------------------------------
def check_new_password(password: str, email: str, min_length: int) -> None:
    """Refuse a password that is too short, too long, or the account's own address."""
    if len(password) < min_length:
        raise AccountError(gettext("The password must have at least %(num)d characters.",
                                   num=min_length))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(gettext("The password may have at most %(num)d characters.",
                                   num=MAX_PASSWORD_LENGTH))
    if password.strip().lower() == email.lower():
        raise AccountError(gettext("The password may not be the email address."))


def set_password(user: AdminUser, password: str, min_length: int) -> None:
    """Hash and store a new password; every session and link of the account ends."""
    check_new_password(password, user.email, min_length)
    user.password_hash = _hasher.hash(password)
    user.session_epoch += 1


def check_password(user: AdminUser | None, password: str) -> bool:
    """Whether ``password`` is the account's; as slow for no account as for a wrong password."""
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
    if user is None or not user.password_hash:
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


def _serializer(secret: str | bytes, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=salt)


def _password_fingerprint(user: AdminUser) -> str:
    return hashlib.sha256((user.password_hash or "").encode("utf-8")).hexdigest()[:16]


def set_password_token(secret: str | bytes, user: AdminUser) -> str:
    """A link token that lets the person choose a password, once."""
    return _serializer(secret, _SET_PASSWORD_SALT).dumps([user.id, _password_fingerprint(user)])


def user_of_set_password_token(session: Session, secret: str | bytes, token: str,
                               max_age: int) -> AdminUser:
    """The account a set-password token is for; AccountError when forged, expired or used."""
    try:
        user_id, fingerprint = _serializer(secret, _SET_PASSWORD_SALT).loads(token,
                                                                             max_age=max_age)
    except SignatureExpired:
        raise AccountError(gettext("This link has expired; ask for a new one.")) from None
    except (BadSignature, TypeError, ValueError):
        raise AccountError(gettext("This link is not valid.")) from None
    user = session.get(AdminUser, user_id) if isinstance(user_id, int) else None
    if user is None or not hmac.compare_digest(str(fingerprint), _password_fingerprint(user)):
        raise AccountError(gettext("This link has already been used or replaced by a newer one."))
    return user


# --- second factor -------------------------------------------------------------------------
def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits, RFC 4226's recommendation)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, email: str, issuer: str = "consent_widget") -> str:
    """The otpauth:// URI an authenticator app reads."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_matches(secret: str, code: str, now: datetime | None = None) -> int | None:
    """The time step ``code`` is valid for (one step of clock drift allowed), or None."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    moment = now or utcnow()
    for drift in (0, -1, 1):
        at = moment + timedelta(seconds=drift * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


def enable_totp(user: AdminUser, secret: str, code: str) -> list[str]:
    """Turn the second factor on once the person proves their app has ``secret``; returns the
    recovery codes, shown once, kept only as hashes. Every other session ends."""
    step = totp_matches(secret, code)
    if step is None:
        raise AccountError(gettext("That code is not the one your app shows; try the next one."))
    user.totp_secret = secret
    user.totp_last_step = step
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    user.recovery_codes = [_code_digest(c) for c in codes]
    user.session_epoch += 1
    return codes


def disable_totp(user: AdminUser) -> None:
    """Turn the second factor off; every other session ends."""
    user.totp_secret = None
    user.totp_last_step = None
    user.recovery_codes = []
    user.session_epoch += 1


def check_second_factor(user: AdminUser, code: str, now: datetime | None = None) -> bool:
    """Accept a TOTP code not used before, or an unused recovery code (then spent)."""
    if not user.totp_secret:
        return False
    step = totp_matches(user.totp_secret, code, now)
    if step is not None:
        # A code seen once is refused after: someone who read it over a shoulder cannot replay it.
        if user.totp_last_step is not None and step <= user.totp_last_step:
            return False
        user.totp_last_step = step
        return True
    digest = _code_digest(code)
    if digest in (user.recovery_codes or []):
        user.recovery_codes = [c for c in user.recovery_codes if c != digest]
        return True
    return False


def _code_digest(code: str) -> str:
    return hashlib.sha256("".join(code.split()).lower().encode("utf-8")).hexdigest()


# --- invitations ---------------------------------------------------------------------------
def invite(session: Session, campaign: Campaign, email: str, role: str, by: AdminUser | None,
           *, days: int = 7) -> Invitation:
    """Record an invitation of ``email`` to ``campaign`` as ``role``; flushed."""
    if role not in ROLES:
        raise AccountError(gettext("The role must be one of %(roles)s.", roles=", ".join(ROLES)))
    try:
        address = normalise(email).lower()
    except InvalidEmail as exc:
        raise AccountError(str(exc)) from None
    now = utcnow()
    invitation = Invitation(public_id="inv_" + secrets.token_urlsafe(12), campaign_id=campaign.id,
                            email=address, role=role, invited_by=by.id if by else None,
                            created_at=now, expires_at=now + timedelta(days=days))
    session.add(invitation)
    session.flush()
    return invitation


def invitation_token(secret: str | bytes, invitation: Invitation) -> str:
    """The signed token of an invitation's link."""
    return _serializer(secret, _INVITATION_SALT).dumps(invitation.public_id)


def invitation_of_token(session: Session, secret: str | bytes, token: str) -> Invitation:
    """The pending invitation a token is for; AccountError when forged, expired or used."""
    try:
        public_id = _serializer(secret, _INVITATION_SALT).loads(token)
    except (BadSignature, TypeError, ValueError):
        raise AccountError(gettext("This invitation link is not valid.")) from None
    invitation = session.scalars(select(Invitation).where(
        Invitation.public_id == public_id)).first() if isinstance(public_id, str) else None
    if invitation is None:
        raise AccountError(gettext("This invitation link is not valid."))
    if invitation.accepted_at is not None:
        raise AccountError(gettext("This invitation has already been used."))
    if invitation.expires_at <= utcnow():
        raise AccountError(gettext("This invitation has expired; ask the campaign's owner for "
                                   "a new one."))
    return invitation


def accept(session: Session, invitation: Invitation, user: AdminUser) -> Membership:
    """Give the invited role to ``user`` and spend the invitation."""
    campaign = session.get(Campaign, invitation.campaign_id)
    member = grant(session, user, campaign, invitation.role)
    invitation.accepted_at = utcnow()
    session.flush()
    return member


def pending_invitations(session: Session, campaign: Campaign) -> list[Invitation]:
    """The campaign's invitations not yet accepted nor expired, newest first."""
    return list(session.scalars(select(Invitation).where(
        Invitation.campaign_id == campaign.id, Invitation.accepted_at.is_(None),
        Invitation.expires_at > utcnow()).order_by(Invitation.id.desc())))
