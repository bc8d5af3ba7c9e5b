"""Tables. The ledger (``consent_events``) is append-only; ``consent_states`` is its current view.

Every row that belongs to a campaign carries ``campaign_id`` so that every query can, and must,
name its campaign: there is no implicit tenant.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Purposes a supporter can consent to. ``network`` is "" for the newsletter.
NEWSLETTER = "newsletter"
SOCIAL_MATCHING = "social_matching"
PURPOSES = (NEWSLETTER, SOCIAL_MATCHING)
DEFAULT_NETWORKS = ("facebook", "linkedin", "twitter", "meetup")

#: Event types of the ledger, which are also the statuses of the state (DPV short forms).
REQUESTED, GIVEN, REFUSED, WITHDRAWN, EXPIRED = "requested", "given", "refused", "withdrawn", "expired"
EVENT_TYPES = (REQUESTED, GIVEN, REFUSED, WITHDRAWN, EXPIRED)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, with the microseconds the ledger hashes."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no time zones and would hand back naive datetimes; the ledger hashes ISO strings,
    so the value read must equal the value written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def result_processor(self, dialect, coltype):
        """The dialect's conversion (SQLite's text to a datetime), then UTC, in one function.

        In place of ``process_result_value``, which SQLAlchemy would call through two more
        levels of functions for each value: a batch check reads some 15,000 timestamps.
        """
        parse = self.impl_instance.result_processor(dialect, coltype)
        utc = timezone.utc

        def process(value):
            if value is None:
                return None
            if parse is not None:
                value = parse(value)
            # PostgreSQL answers in the session's TimeZone (+01:00 in Paris): back to UTC, or the
            # ISO string the ledger hashes would change with the server's settings.
            return value.replace(tzinfo=utc) if value.tzinfo is None else value.astimezone(utc)

        return process


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Campaign(Base):
    """A candidate's campaign: the controller of the data and the tenant of everything else."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    controller: Mapped[str] = mapped_column(String(200))
    controller_address: Mapped[str] = mapped_column(String(500), default="")
    contact_email: Mapped[str] = mapped_column(String(320))
    policy_url: Mapped[str] = mapped_column(String(2000))
    locale: Mapped[str] = mapped_column(String(8), default="fr")
    jurisdiction: Mapped[str] = mapped_column(String(8), default="FR")
    networks: Mapped[list] = mapped_column(JSON, default=list)
    origins: Mapped[list] = mapped_column(JSON, default=list)
    validity_days: Mapped[int] = mapped_column(Integer, default=730)
    # The widget's look (consent_widget.theme validates them): "" accent keeps the default.
    theme_accent: Mapped[str] = mapped_column(String(7), default="")
    theme_font: Mapped[str] = mapped_column(String(16), default="system")
    theme_radius: Mapped[int] = mapped_column(Integer, default=4)
    theme_scheme: Mapped[str] = mapped_column(String(8), default="auto")
    # The ledger head: the sequence number and hash of the campaign's last event. Writers update
    # this row first, which serialises appends per campaign on every database.
    ledger_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_head: Mapped[str] = mapped_column(String(64), default="0" * 64)
    # Consent texts the campaign's team wrote and published, by "purpose:network:locale"; an
    # item without one shows the catalogue's text. Kept on the row the widget reads anyway, so
    # a custom text costs the form page no query.
    notice_texts: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notice(Base):
    """One version of the exact consent text shown for a purpose, network and language."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("campaign_id", "purpose", "network", "locale", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    network: Mapped[str] = mapped_column(String(32), default="")
    locale: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subject(Base):
    """A supporter of one campaign, known by an opaque id and a keyed hash of their email."""

    __tablename__ = "subjects"
    __table_args__ = (
        UniqueConstraint("campaign_id", "email_hmac"),
        # Covers the check API's lookup (keyed hash to subject id) without reading the table,
        # which a batch of 10,000 random addresses would otherwise do 10,000 times; it also
        # serves every query by campaign, so campaign_id needs no index of its own.
        Index("ix_subjects_lookup", "campaign_id", "email_hmac", "public_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    email_hmac: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    # Bumped whenever earlier manage and unsubscribe links must stop working.
    link_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the person's data was erased; the row stays as a keyed-hash suppression entry so
    # the ledger keeps verifying and a later import cannot quietly match the person again.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Signup(Base):
    """A widget submission awaiting its double opt-in confirmation."""

    __tablename__ = "signups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    # {"newsletter": [""], "social_matching": ["facebook", ...]}: what was ticked.
    choices: Mapped[dict] = mapped_column(JSON)
    # Every item offered, as "purpose:network", with the notice id shown for it.
    offered: Mapped[dict] = mapped_column(JSON)
    locale: Mapped[str] = mapped_column(String(8))
    origin: Mapped[str] = mapped_column(String(2000), default="")
    gpc: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subject: Mapped[Subject] = relationship()


class ConsentEvent(Base):
    """One fact of the ledger; never updated, never deleted. ``hash`` chains it to its campaign."""

    __tablename__ = "consent_events"
    __table_args__ = (UniqueConstraint("campaign_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    network: Mapped[str] = mapped_column(String(32), default="")
    type: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"))
    signup_id: Mapped[int | None] = mapped_column(ForeignKey("signups.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16), default="subject")
    origin: Mapped[str] = mapped_column(String(2000), default="")
    locale: Mapped[str] = mapped_column(String(8), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ConsentState(Base):
    """The current status of one subject, purpose and network: a view of the ledger."""

    __tablename__ = "consent_states"
    __table_args__ = (Index("ix_state_lookup", "campaign_id", "subject_id", "purpose", "network",
                            unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    network: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[int] = mapped_column(ForeignKey("consent_events.id"))
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"))
    given_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    receipt_id: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Receipt(Base):
    """A signed consent receipt: a snapshot of a subject's consents at one moment."""

    __tablename__ = "receipts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    supersedes: Mapped[str | None] = mapped_column(String(36))
    kid: Mapped[str] = mapped_column(String(64))
    jws: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """An Ed25519 key pair; retired keys stay published so old receipts keep verifying."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthClient(Base):
    """A platform's API client, bound to one campaign; only a hash of its secret is kept."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship()


class OAuthRevocations(Base):
    """One row counting the changes that can make a cached access token invalid.

    Database triggers bump it whenever a token or client is revoked, changed or deleted, so a
    process may keep tokens in memory and use them only while the count it read is unchanged.
    """

    __tablename__ = "oauth_revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[int] = mapped_column(Integer, default=0)


class OAuthToken(Base):
    """An issued access token, stored as its SHA-256 so a database leak yields no usable token."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    scope: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    client: Mapped[OAuthClient] = relationship()


class OutboxMessage(Base):
    """A message queued in the transaction of the event it tells about, sent later by a worker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # The HTTP status of the last webhook attempt that got an answer, shown in the console.
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Base):
    """A platform's URL that receives the campaign's events, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The Standard Webhooks secret, "whsec_" + base64; the receiver needs it in clear to verify.
    secret: Mapped[str] = mapped_column(String(100))
    # Event types delivered; an empty list means every type.
    events: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- the campaign console ------------------------------------------------------------------
#: Roles within a campaign, from most to least allowed.
OWNER, EDITOR, VIEWER = "owner", "editor", "viewer"
ROLES = (OWNER, EDITOR, VIEWER)


class AdminUser(Base):
    """A person of a campaign's team (or the service's operator) who signs in to the console."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # argon2id; None until the person follows their set-password link.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    # Part of the login session's id: bumping it ends every session of the account (sign-out,
    # new password, second factor changed).
    session_epoch: Mapped[int] = mapped_column(Integer, default=1)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The time step of the last code accepted: a code is good once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # SHA-256 of each unused recovery code.
    recovery_codes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Membership(Base):
    """A user's role in one campaign."""

    __tablename__ = "admin_memberships"
    __table_args__ = (UniqueConstraint("user_id", "campaign_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[AdminUser] = relationship()
    campaign: Mapped[Campaign] = relationship()


class Invitation(Base):
    """An owner's invitation of a person to a campaign; its signed link works once."""

    __tablename__ = "admin_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One action taken in the console or by an admin command: who, what, when, from where.

    Only ever inserted; the database refuses updates and deletes (see the migration)."""

    __tablename__ = "admin_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    # Kept as written: the log must still say who acted after the account is gone.
    user_email: Mapped[str] = mapped_column(String(320), default="")
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    address: Mapped[str] = mapped_column(String(64), default="")


class ProofJob(Base):
    """A proof export the console runs in the background, with its progress and its file."""

    __tablename__ = "proof_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    path: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LedgerCheck(Base):
    """The outcome of one verification of a campaign's chain, for the compliance summary."""

    __tablename__ = "ledger_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    events: Mapped[int] = mapped_column(BigInteger, default=0)
    head: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
