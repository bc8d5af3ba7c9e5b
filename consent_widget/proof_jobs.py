"""Proof exports run in the background for the console, with their progress on record.

A job is a row (``ProofJob``); a thread of the process that took the request writes the archive
into the instance folder, updating the row every few thousand events, so the console's page
shows the progress and offers the file when it is done.
"""
from __future__ import annotations

import os
import secrets
import threading

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import chain
from .models import Campaign, LedgerCheck, ProofJob, utcnow

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


def export_dir(app) -> str:
    """Where the console's proof archives are kept."""
    return os.path.join(app.instance_path, "proof-exports")


def jobs(session: Session, campaign: Campaign, limit: int = 20) -> list[ProofJob]:
    """The campaign's latest export jobs, newest first."""
    return list(session.scalars(select(ProofJob).where(ProofJob.campaign_id == campaign.id)
                                .order_by(ProofJob.id.desc()).limit(limit)))


def job(session: Session, campaign: Campaign, public_id: str) -> ProofJob | None:
    """One of the campaign's jobs, or None (never another campaign's)."""
    return session.scalars(select(ProofJob).where(ProofJob.campaign_id == campaign.id,
                                                  ProofJob.public_id == public_id)).first()


def create(session: Session, campaign: Campaign, user_id: int | None) -> ProofJob:
    """Record a queued export of ``campaign``; flushed."""
    row = ProofJob(public_id="px_" + secrets.token_urlsafe(12), campaign_id=campaign.id,
                   requested_by=user_id, status=QUEUED, done=0,
                   total=campaign.ledger_seq or 0, path="", result={}, error="",
                   created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def _record(app, job_id: int, **values) -> None:
    """Write a job's progress or outcome in a session and transaction of its own."""
    with app.extensions["consent_db"]() as session:
        session.execute(update(ProofJob).where(ProofJob.id == job_id).values(**values))
        session.commit()


def run(app, job_id: int) -> None:
    """Write the archive of a queued job, recording progress; the job ends done or failed.

    The export reads in a read transaction (:func:`db.reading`): on SQLite it holds no write
    lock, so signups go on meanwhile and the progress can be written beside it."""
    from . import db, proof_export
    with app.app_context():
        _record(app, job_id, status=RUNNING)
        partial = None
        try:
            with db.reading() as session:
                row = session.get(ProofJob, job_id)
                campaign = session.get(Campaign, row.campaign_id)
                os.makedirs(export_dir(app), exist_ok=True)
                path = os.path.join(export_dir(app), f"{campaign.slug}-{row.public_id}.zip")
                partial = path + ".part"
                with open(partial, "wb") as out:
                    result = proof_export.write_export(
                        session, campaign, out,
                        progress=lambda done, total: _record(app, job_id, done=done,
                                                             total=total))
            os.replace(partial, path)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job, said on it
            if partial and os.path.exists(partial):
                os.remove(partial)
            app.logger.exception("proof export %s failed", job_id)
            _record(app, job_id, status=FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                    finished_at=utcnow())
            return
        _record(app, job_id, status=DONE, path=path, result=result, done=result["events"],
                total=result["events"], finished_at=utcnow())


def start(app, job_id: int) -> threading.Thread:
    """Run the job in a background thread of this process."""
    thread = threading.Thread(target=run, args=(app, job_id), daemon=True,
                              name=f"proof-export-{job_id}")
    thread.start()
    return thread


def verify_and_record(session: Session, campaign: Campaign) -> LedgerCheck:
    """Verify the campaign's chain now and keep the outcome, for the compliance summary."""
    return record_check(session, campaign, chain.verify_chain(session, campaign))


def record_check(session: Session, campaign: Campaign, report: chain.ChainReport) -> LedgerCheck:
    """Keep the outcome of a verification of the campaign's chain; flushed."""
    check = LedgerCheck(campaign_id=campaign.id, checked_at=utcnow(), ok=report.ok,
                        events=report.events, head=report.head, reason=report.reason)
    session.add(check)
    session.flush()
    return check


def last_check(session: Session, campaign: Campaign) -> LedgerCheck | None:
    """The campaign's latest chain verification, or None."""
    return session.scalars(select(LedgerCheck).where(LedgerCheck.campaign_id == campaign.id)
                           .order_by(LedgerCheck.id.desc()).limit(1)).first()
