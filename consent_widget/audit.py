"""The console's audit log: who did what, when, from which address. Rows are only inserted;
the database refuses to change or delete them (see the migration that made the table)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AdminUser, AuditEntry, Campaign, utcnow


def record(session: Session, action: str, *, user: AdminUser | None = None,
           campaign: Campaign | None = None, target: str = "", detail: dict | None = None,
           address: str = "") -> AuditEntry:
    """Write one entry in the caller's transaction; ``action`` is a dotted name like
    ``client.revoke``, ``target`` the public id of what it acted on."""
    entry = AuditEntry(occurred_at=utcnow(), user_id=user.id if user else None,
                       user_email=user.email if user else "",
                       campaign_id=campaign.id if campaign else None, action=action,
                       target=target[:200], detail=detail or {}, address=address[:64])
    session.add(entry)
    session.flush()
    return entry


def entries(session: Session, campaign: Campaign | None, *, limit: int = 200,
            before_id: int | None = None) -> list[AuditEntry]:
    """The newest entries of a campaign (None: the service-wide ones), newest first."""
    query = select(AuditEntry).where(
        AuditEntry.campaign_id == campaign.id if campaign else AuditEntry.campaign_id.is_(None))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))
