"""The figures of a campaign's dashboard, each one grouped query filtered by campaign.

Days are UTC calendar days. Every function returns plain values (no rows), so the console and
its charts render them without touching the session again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.orm import Session

from . import state
from .models import (WITHDRAWN, Campaign, ConsentEvent, ConsentState,
                     OutboxMessage, Signup, WebhookEndpoint)

#: The periods the dashboard offers, in days.
PERIODS = (7, 30, 90)


def _day(session: Session, column):
    """The UTC calendar day of a timestamp column, on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores UTC already


def days(until: datetime, count: int) -> list[date]:
    """The ``count`` UTC days ending with ``until``'s, oldest first."""
    last = until.date()
    return [last - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def _per_day(session: Session, column, where, since: datetime) -> dict[date, int]:
    day = _day(session, column)
    rows = session.execute(select(day, func.count()).where(*where, column >= since)
                           .group_by(day)).all()
    # SQLite answers "YYYY-MM-DD" strings, PostgreSQL dates.
    return {(value if isinstance(value, date) else date.fromisoformat(value)): count
            for value, count in rows}


@dataclass(frozen=True)
class Activity:
    """Signups, confirmations and withdrawals per day over a period."""

    days: list[date]
    signups: list[int]
    confirmations: list[int]
    withdrawals: list[int]


def activity(session: Session, campaign: Campaign, now: datetime, period: int) -> Activity:
    """What happened on each of the last ``period`` days (days without activity count 0)."""
    span = days(now, period)
    since = datetime.combine(span[0], datetime.min.time(), tzinfo=now.tzinfo)
    signups = _per_day(session, Signup.created_at, [Signup.campaign_id == campaign.id], since)
    confirmed = _per_day(session, Signup.confirmed_at, [Signup.campaign_id == campaign.id],
                         since)
    withdrawn = _per_day(session, ConsentEvent.occurred_at,
                         [ConsentEvent.campaign_id == campaign.id,
                          ConsentEvent.type == WITHDRAWN], since)
    return Activity(span, [signups.get(d, 0) for d in span], [confirmed.get(d, 0) for d in span],
                    [withdrawn.get(d, 0) for d in span])


def consent_counts(session: Session, campaign: Campaign,
                   now: datetime) -> dict[tuple[str, str], dict[str, int]]:
    """The current number of people per (purpose, network) and status; a consent past its
    validity counts as expired."""
    status = state.effective_status_column(now)
    rows = session.execute(
        select(ConsentState.purpose, ConsentState.network, status, func.count())
        .where(ConsentState.campaign_id == campaign.id)
        .group_by(ConsentState.purpose, ConsentState.network, status)).all()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for purpose, network, status_now, count in rows:
        counts.setdefault((purpose, network), {})[status_now] = count
    return counts


@dataclass(frozen=True)
class Rates:
    """Shares of the period's signups."""

    signups: int
    confirmed: int
    gpc: int

    @property
    def confirmation_rate(self) -> float | None:
        """Confirmed signups over signups; None without signups."""
        return self.confirmed / self.signups if self.signups else None

    @property
    def gpc_share(self) -> float | None:
        """Signups sent with Global Privacy Control over signups; None without signups."""
        return self.gpc / self.signups if self.signups else None


def rates(session: Session, campaign: Campaign, now: datetime, period: int) -> Rates:
    """The confirmation rate and GPC share of the signups of the last ``period`` days."""
    since = datetime.combine(days(now, period)[0], datetime.min.time(), tzinfo=now.tzinfo)
    total, confirmed, gpc = session.execute(select(
        func.count(), func.count(Signup.confirmed_at),
        func.coalesce(func.sum(case((Signup.gpc.is_(True), 1), else_=0)), 0))
        .where(Signup.campaign_id == campaign.id, Signup.created_at >= since)).one()
    return Rates(total, confirmed, int(gpc))


@dataclass(frozen=True)
class Queue:
    """The campaign's messages waiting in the outbox, per kind."""

    kind: str
    pending: int
    oldest: datetime | None
    dead: int


def outbox_depth(session: Session, campaign: Campaign) -> list[Queue]:
    """Pending and dead messages per kind, and when the oldest pending one was queued."""
    rows = session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count(),
               func.min(OutboxMessage.created_at))
        .where(OutboxMessage.campaign_id == campaign.id,
               OutboxMessage.status.in_(("pending", "dead")))
        .group_by(OutboxMessage.kind, OutboxMessage.status)).all()
    found: dict[str, dict] = {kind: {"pending": 0, "oldest": None, "dead": 0}
                              for kind in ("email", "webhook")}
    for kind, status, count, oldest in rows:
        entry = found.setdefault(kind, {"pending": 0, "oldest": None, "dead": 0})
        entry[status] = count
        if status == "pending":
            entry["oldest"] = oldest
    return [Queue(kind, v["pending"], v["oldest"], v["dead"]) for kind, v in found.items()]


@dataclass(frozen=True)
class FailingEndpoint:
    """A webhook endpoint that is disabled, or whose deliveries are failing."""

    public_id: str
    url: str
    status: str
    reason: str
    failing: int


def failing_endpoints(session: Session, campaign: Campaign) -> list[FailingEndpoint]:
    """Disabled endpoints, and active ones with deliveries waiting after a failure."""
    failing = dict(session.execute(
        select(OutboxMessage.recipient, func.count())
        .where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.kind == "webhook",
               OutboxMessage.status.in_(("pending", "dead")), OutboxMessage.attempts > 0)
        .group_by(OutboxMessage.recipient)).all())
    last_error = dict(session.execute(
        select(OutboxMessage.recipient, func.max(OutboxMessage.last_error))
        .where(OutboxMessage.campaign_id == campaign.id, OutboxMessage.kind == "webhook",
               OutboxMessage.attempts > 0, OutboxMessage.status.in_(("pending", "dead")))
        .group_by(OutboxMessage.recipient)).all())
    result = []
    for endpoint in session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.campaign_id == campaign.id).order_by(WebhookEndpoint.id)):
        count = failing.get(endpoint.public_id, 0)
        if endpoint.status != "active" or count:
            result.append(FailingEndpoint(endpoint.public_id, endpoint.url, endpoint.status,
                                          endpoint.disabled_reason or
                                          last_error.get(endpoint.public_id, ""), count))
    return result
